"""EVM chain support: compiled protocol artefacts, deployment and helpers."""
