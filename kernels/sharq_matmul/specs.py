"""Argument specs shared by tests/kernels and benchmarks/bench_linear.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# Llama-3.1-8B linear layers as (K = in_features, N = out_features).
LLAMA31_8B_SHAPES = ((4096, 4096), (4096, 1024), (4096, 14336), (14336, 4096))
DECODE_MS = (1, 4, 16)
BENCH_MS = (1, 4, 16, 64, 256, 1024, 4096, 16384)
# Small shapes the interpret-mode tests run (K multiple of 32, N multiple of 16).
TEST_SHAPES = ((256, 64),)
TEST_MS = (1, 13, 40)


def heavy_activations(key, m: int, k: int, dtype=jnp.bfloat16) -> jax.Array:
  """LLM-like activations: Student-t(3) times log-normal per-channel scales."""
  k1, k2 = jax.random.split(key)
  return (jax.random.t(k1, 3.0, (m, k)) * jnp.exp(jax.random.normal(k2, (1, k)))).astype(dtype)


def heavy_weight(key, n: int, k: int, dtype=jnp.bfloat16) -> jax.Array:
  """Student-t(5) weights with std ≈ 0.02."""
  return (jax.random.t(key, 5.0, (n, k)) * 0.02).astype(dtype)


def heavy_activations_np(m: int, k: int, seed: int, dtype=jnp.bfloat16) -> jax.Array:
  """NumPy-seeded variant for CPU tests (deterministic across jax versions)."""
  rng = np.random.default_rng(seed)
  x = rng.standard_t(3, size=(m, k)) * np.exp(rng.normal(0, 1.5, size=(1, k)))
  return jnp.asarray(x.astype(np.float32), dtype)
