"""Pallas kernels (installed as sharq_jax.kernels)."""
