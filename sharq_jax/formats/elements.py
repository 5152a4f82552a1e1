"""FP4 element grids (E2M1, S1P2), their rounding, and nibble packing.

Rounding is written as explicit threshold comparisons so that ties go to the even
code exactly as DESIGN.md §2.1 lists them, independent of any backend cast.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

E2M1_MAGNITUDES = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0], np.float32)
E2M1_MAX = 6.0
# Upper bounds of each magnitude's rounding interval; `strict` marks a bound that
# belongs to the next code (the next code is even there, so the tie rounds up).
_E2M1_BOUNDS = ((0.25, False), (0.75, True), (1.25, False), (1.75, True),
                (2.5, False), (3.5, True), (5.0, False))
# Decoded value of each 4-bit E2M1 code: bit 3 is the sign, bits 0-2 the magnitude.
E2M1_CODE_VALUES = np.concatenate([E2M1_MAGNITUDES, -E2M1_MAGNITUDES]).astype(np.float32)


E4M3_MIN_NORMAL_EXP = -6
E4M3_MANTISSA_BITS = 3


def pow2(exponent: jax.Array) -> jax.Array:
  """2^e as float32, exactly, for integer e in the normal range [−126, 127]."""
  return lax.bitcast_convert_type(((exponent + 127) << 23).astype(jnp.int32), jnp.float32)


def e4m3_round(v: jax.Array) -> jax.Array:
  """Rounds finite 0 ≤ v ≤ 448 onto the float8_e4m3fn grid (RNE), as float32.

  Arithmetic, not a cast: XLA on GPU drops an f32 → float8 → f32 round trip inside
  jit (excess precision), which would leave block scales unrounded. The grid step is
  2^(b−3) in the binade [2^b, 2^(b+1)), b ≥ −6, and 2^−9 below 2^−6 (subnormals).
  """
  v = v.astype(jnp.float32)
  _, exp = jnp.frexp(v)  # v = frac·2^exp, frac in [0.5, 1): binade b = exp − 1
  step = jnp.maximum(exp - 1, E4M3_MIN_NORMAL_EXP) - E4M3_MANTISSA_BITS
  return jnp.round(v * pow2(-step)) * pow2(step)  # power-of-two scalings are exact


def e2m1_index(x: jnp.ndarray) -> jnp.ndarray:
  """Magnitude index 0..7 of the E2M1 value nearest to |x| (ties to even, saturating)."""
  mag = jnp.abs(x.astype(jnp.float32))
  index = jnp.zeros(mag.shape, jnp.int32)
  for bound, strict in _E2M1_BOUNDS:
    index += (mag >= bound if strict else mag > bound).astype(jnp.int32)
  return index


def e2m1_round(x: jnp.ndarray) -> jnp.ndarray:
  """Rounds float32 values onto the E2M1 grid (RNE, saturating at ±6); keeps the sign."""
  x = x.astype(jnp.float32)
  mag = jnp.asarray(E2M1_MAGNITUDES)[e2m1_index(x)]
  return jnp.where(jnp.signbit(x), -mag, mag)


def s1p2_index(x: jnp.ndarray) -> jnp.ndarray:
  """Magnitude index k (value k/4, 0..7) of the S1P2 value nearest |x|, ties to even."""
  scaled = jnp.abs(x.astype(jnp.float32)) * 4.0  # exact: a power-of-two scaling
  return jnp.minimum(jnp.round(scaled), 7.0).astype(jnp.int32)


def e2m1_to_nibbles(codes: jnp.ndarray) -> jnp.ndarray:
  """4-bit E2M1 codes (uint8 0..15; bit 3 = sign) of values already on the grid."""
  values = codes.astype(jnp.float32)
  sign = jnp.signbit(values).astype(jnp.uint8)
  return (sign << 3) | e2m1_index(values).astype(jnp.uint8)


def nibbles_to_e2m1(nibbles: jnp.ndarray) -> jnp.ndarray:
  """Inverse of `e2m1_to_nibbles`: uint8 codes 0..15 to float4_e2m1fn values."""
  table = jnp.asarray(E2M1_CODE_VALUES)
  return table[nibbles.astype(jnp.int32) & 15].astype(jnp.float4_e2m1fn)


def pack_nibbles(nibbles: jnp.ndarray) -> jnp.ndarray:
  """Packs uint8 nibbles two per byte along the last axis (low nibble = even index)."""
  if nibbles.shape[-1] % 2:
    raise ValueError(f"pack_nibbles: last axis must be even, got shape {nibbles.shape}")
  pairs = nibbles.astype(jnp.uint8).reshape(*nibbles.shape[:-1], -1, 2)
  return (pairs[..., 0] & 15) | ((pairs[..., 1] & 15) << 4)


def unpack_nibbles(packed: jnp.ndarray) -> jnp.ndarray:
  """Inverse of `pack_nibbles`: uint8 (..., K/2) to uint8 nibbles (..., K)."""
  low = packed & 15
  high = packed >> 4
  return jnp.stack([low, high], axis=-1).reshape(*packed.shape[:-1], -1)
