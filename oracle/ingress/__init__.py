"""Ingress: one module per source. Each verifies before it believes and returns (event, intent) to record."""
