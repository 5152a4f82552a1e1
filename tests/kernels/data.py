"""Shared test data and error measures of the kernel tests."""

import jax.numpy as jnp
import numpy as np


def heavy(shape, seed, scale=1.0, dtype=jnp.float32):
  """Heavy-tailed (Student t, 3 degrees of freedom) values of `shape`, seeded."""
  rng = np.random.default_rng(seed)
  return jnp.asarray((rng.standard_t(3, size=shape) * scale).astype(np.float32), dtype)


def rel(a, b) -> float:
  """Relative Frobenius error of a against b, in float32."""
  a = jnp.asarray(a, jnp.float32)
  b = jnp.asarray(b, jnp.float32)
  return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


def assert_nan_columns_and_close(y, ref, nan_columns, msg=None, tol=1e-6):
  """y is NaN exactly where ref is, every row is NaN in the output columns nan_columns
  only, and the rest is within tol of ref (relative)."""
  y, ref = np.asarray(y), np.asarray(ref)
  assert np.array_equal(np.isnan(ref), np.isnan(y)), msg
  assert set(np.flatnonzero(np.isnan(y).any(axis=0))) == set(nan_columns), msg
  ok = ~np.isnan(ref)
  assert rel(y[ok], ref[ok]) < tol, msg
