"""Bad-input policy and shape validation shared by every quantizer (DESIGN.md §2.7)."""

from __future__ import annotations

import enum
import math

import jax.numpy as jnp
from jax.experimental import checkify


class BadInput(enum.Enum):
  """What a quantizer does with NaN or Inf in its input.

  NAN: the block holding the bad value gets a NaN block scale, so it dequantizes to
    NaN and the model output shows it; other blocks are untouched.
  RAISE: additionally emit a `checkify.check` that fails on non-finite input. Inside
    `jit` the caller must wrap the function with `checkify.checkify` to see the error.
  """

  NAN = "nan"
  RAISE = "raise"


def check_finite(x: jnp.ndarray, policy: BadInput, name: str) -> None:
  """Emits a checkify check for non-finite values when `policy` is RAISE."""
  if policy is BadInput.RAISE:
    checkify.check(jnp.all(jnp.isfinite(x)), f"{name}: input contains NaN or Inf")


def check_divisible(shape: tuple[int, ...], multiple: int, *, name: str, what: str) -> None:
  """Raises a ValueError naming `name` and the shape when K is not a multiple."""
  if not shape:
    raise ValueError(f"{name}: expected an array with a last (K) axis, got a scalar")
  k = shape[-1]
  if k % multiple:
    raise ValueError(
        f"{name}: last axis K={k} of shape {tuple(shape)} is not a multiple of the "
        f"{what} ({multiple}); pass pad=True to zero-pad K explicitly")


def padded_size(k: int, multiple: int) -> int:
  """Smallest multiple of `multiple` that is >= k."""
  return int(math.ceil(k / multiple) * multiple)


def pad_last_axis(x: jnp.ndarray, k_padded: int) -> jnp.ndarray:
  """Zero-pads the last axis of x to k_padded (zeros move no amax and get code 0)."""
  k = x.shape[-1]
  if k == k_padded:
    return x
  widths = [(0, 0)] * (x.ndim - 1) + [(0, k_padded - k)]
  return jnp.pad(x, widths)
