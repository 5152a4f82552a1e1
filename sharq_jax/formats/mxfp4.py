"""MXFP4 (OCP MX v1.0): E2M1 elements, an E8M0 power-of-two scale per 32 (DESIGN §2.3)."""

from __future__ import annotations

import dataclasses
import enum

import jax
import jax.numpy as jnp
from jax import lax

from sharq_jax import errors
from sharq_jax.formats import base
from sharq_jax.formats.elements import e2m1_round, pow2

E8M0_BIAS = 127
# log2 of the largest E2M1 magnitude's binade (6 = 1.5·2²): the OCP floor rule's offset.
E2M1_EMAX = 2


class ScaleRounding(enum.Enum):
  """How the MXFP4 shared exponent is chosen from the block amax."""

  FLOOR = "floor"  # OCP: floor(log2 amax) − 2; the top of the block may saturate
  CEIL = "ceil"  # ceil(log2(amax / 6)): never saturates


@dataclasses.dataclass(frozen=True)
class MXFP4(base.Format):
  """OCP MXFP4: blocks of 32 E2M1 values sharing one E8M0 scale; no tensor scale.

  Attributes:
    block_size: elements per block (32 in the OCP spec; SharQ's sparse path uses 64).
    scale_rounding: FLOOR (OCP default) or CEIL.
    bad_input: what NaN/Inf in the input does (see errors.BadInput).
  """

  block_size: int = 32
  scale_rounding: ScaleRounding = ScaleRounding.FLOOR
  bad_input: errors.BadInput = errors.BadInput.NAN

  def __post_init__(self):
    if not isinstance(self.block_size, int) or self.block_size <= 0:
      raise ValueError(f"MXFP4 block_size must be a positive int, got {self.block_size!r}")
    if not isinstance(self.scale_rounding, ScaleRounding):
      raise ValueError(f"MXFP4 scale_rounding must be one of "
                       f"{[r.name for r in ScaleRounding]}, got {self.scale_rounding!r}")

  def shared_exponent(self, amax: jax.Array) -> jax.Array:
    """The block's E8M0 exponent e_b (int32), clamped to [−127, 127]."""
    if self.scale_rounding is ScaleRounding.FLOOR:
      mantissa, exp = jnp.frexp(amax)  # amax = mantissa·2^exp, mantissa in [0.5, 1)
      e = exp - 1 - E2M1_EMAX
    else:
      mantissa, exp = jnp.frexp(base.exact_divide(amax, 6.0))
      e = jnp.where(mantissa == 0.5, exp - 1, exp)  # exact powers of two stay put
    e = jnp.where(amax > 0, e, -E8M0_BIAS)
    return jnp.clip(e, -E8M0_BIAS, E8M0_BIAS).astype(jnp.int32)

  def encode_blocks(self, blocks, tensor_scale):
    del tensor_scale
    amax = base.finite_amax(blocks, axis=-1, keepdims=True)
    e = self.shared_exponent(amax)
    # a · 2^(−e): −e is in [−125, 127] for finite float32 amax, so the factor is normal.
    codes = e2m1_round(blocks * pow2(jnp.maximum(-e, -126))).astype(jnp.float4_e2m1fn)
    bits = (e + E8M0_BIAS).astype(jnp.uint8)
    bits = jnp.where(base.has_bad_value(blocks, keepdims=True), jnp.uint8(255), bits)
    scales = lax.bitcast_convert_type(bits[..., 0], jnp.float8_e8m0fnu)
    return codes, scales

  def decode_blocks(self, codes, scales):
    return codes.astype(jnp.float32) * scales.astype(jnp.float32)[..., None]
