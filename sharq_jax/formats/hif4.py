"""HiF4 (HiFloat4): 64-value units with 32 bits of three-level metadata (DESIGN §2.4).

Per unit: an unsigned E6M2 scale from the unit max, one exponent bump per 8 values
(e8) and one per 4 (e4); elements are S1P2 (sign + k/4, k = 0..7). The metadata word
(uint32) holds bits 0-7 the E6M2 code, 8-15 the e8 flags, 16-31 the e4 flags.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from sharq_jax import errors
from sharq_jax.formats import base
from sharq_jax.formats.elements import pow2, s1p2_index

UNIT = 64
E6M2_MIN_EXP = -48
E6M2_MAX_EXP = 15
E6M2_NAN_CODE = 255  # exponent 15, mantissa 0b11: 2^15·1.75 is reserved for NaN
S1P2_MAX_INDEX = 7


def round_e6m2(v: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Rounds v ≥ 0 to E6M2 (RNE, no zero, saturating); returns (value, uint8 code)."""
  frac, exp = jnp.frexp(v)  # v = frac·2^exp, frac in [0.5, 1)
  quarters = jnp.round(frac * 8.0)  # 1.mm in quarters: 4..8 (8 carries)
  exp = exp - 1 + (quarters == 8.0)
  mant = jnp.where(quarters == 8.0, 0, quarters.astype(jnp.int32) - 4)
  too_small = (v == 0) | (exp < E6M2_MIN_EXP)
  too_large = (exp > E6M2_MAX_EXP) | ((exp == E6M2_MAX_EXP) & (mant > 2))
  exp = jnp.where(too_small, E6M2_MIN_EXP, jnp.where(too_large, E6M2_MAX_EXP, exp))
  mant = jnp.where(too_small, 0, jnp.where(too_large, 2, mant))
  value = (1.0 + mant.astype(jnp.float32) / 4.0) * pow2(exp)
  code = (((exp - E6M2_MIN_EXP) << 2) | mant).astype(jnp.uint8)
  return value, code


def decode_e6m2(code: jax.Array) -> jax.Array:
  """float32 value of E6M2 codes (NaN for the reserved top code)."""
  code = code.astype(jnp.int32)
  exp = (code >> 2) + E6M2_MIN_EXP
  value = (1.0 + (code & 3).astype(jnp.float32) / 4.0) * pow2(exp)
  return jnp.where(code == E6M2_NAN_CODE, jnp.nan, value)


def _flags_to_bits(flags: jax.Array) -> jax.Array:
  """Packs boolean flags (..., n) into a uint32 bit field (flag i at bit i)."""
  weights = jnp.left_shift(jnp.uint32(1), jnp.arange(flags.shape[-1], dtype=jnp.uint32))
  return jnp.sum(flags.astype(jnp.uint32) * weights, axis=-1, dtype=jnp.uint32)


def _bits_to_flags(bits: jax.Array, n: int) -> jax.Array:
  """Inverse of _flags_to_bits: uint32 (...) -> int32 (..., n) of 0/1."""
  shifts = jnp.arange(n, dtype=jnp.uint32)
  return ((bits[..., None] >> shifts) & 1).astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class HiF4(base.Format):
  """HiFloat4: units of 64 values with an E6M2 scale and per-8/per-4 exponent bumps.

  Attributes:
    block_size: fixed at 64 (the HiF4 unit).
    bad_input: what NaN/Inf in the input does (see errors.BadInput).
  """

  block_size: int = UNIT
  bad_input: errors.BadInput = errors.BadInput.NAN
  scale_bits = 32  # one metadata word per unit

  def __post_init__(self):
    if self.block_size != UNIT:
      raise ValueError(f"HiF4 units hold exactly {UNIT} values, got block_size={self.block_size}")

  def encode_blocks(self, blocks, tensor_scale):
    del tensor_scale
    mags = jnp.where(jnp.isfinite(blocks), jnp.abs(blocks), 0.0)
    v16 = jnp.max(mags.reshape(*mags.shape[:-1], 16, 4), axis=-1)
    v8 = jnp.max(v16.reshape(*v16.shape[:-1], 8, 2), axis=-1)
    vmax = jnp.max(v8, axis=-1, keepdims=True)
    e6m2, e6m2_code = round_e6m2(base.exact_divide(vmax, 7.0))
    e8 = (v8 >= 4.0 * e6m2).astype(jnp.int32)
    e8_per4 = jnp.repeat(e8, 2, axis=-1)
    e4 = (v16 >= 2.0 * e6m2 * pow2(e8_per4)).astype(jnp.int32)
    group_scale = e6m2 * pow2(e8_per4 + e4)  # (..., 16): exact power-of-two multiples
    scaled = base.exact_divide(blocks.reshape(*blocks.shape[:-1], 16, 4),
                               group_scale[..., None])
    k = s1p2_index(scaled).astype(jnp.uint8)
    sign = jnp.signbit(scaled).astype(jnp.uint8)
    codes = ((sign << 3) | k).reshape(blocks.shape)
    bad = base.has_bad_value(blocks)
    e6m2_code = jnp.where(bad, jnp.uint8(E6M2_NAN_CODE), e6m2_code[..., 0])
    meta = (e6m2_code.astype(jnp.uint32) | (_flags_to_bits(e8) << 8)
            | (_flags_to_bits(e4) << 16))
    return codes, meta

  def decode_blocks(self, codes, scales):
    e6m2 = decode_e6m2((scales & 255).astype(jnp.uint8))
    e8 = _bits_to_flags((scales >> 8) & 255, 8)
    e4 = _bits_to_flags(scales >> 16, 16)
    group_scale = e6m2[..., None] * pow2(jnp.repeat(e8, 2, axis=-1) + e4)
    k = (codes & 7).astype(jnp.float32) / 4.0
    mag = k.reshape(*k.shape[:-1], 16, 4) * group_scale[..., None]
    signed = jnp.where(((codes >> 3) & 1).reshape(mag.shape) == 1, -mag, mag)
    return signed.reshape(codes.shape)
