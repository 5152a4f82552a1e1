"""Experiments: small functions in a name → function table (see experiments.registry)."""
