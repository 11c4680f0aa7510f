"""Chain adapters, one package per family; the core sees only `chains.base`."""
