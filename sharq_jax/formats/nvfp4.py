"""NVFP4: E2M1 elements, an E4M3 scale per block, a float32 tensor scale (DESIGN §2.2)."""

from __future__ import annotations

import dataclasses
import enum

import jax
import jax.numpy as jnp

from sharq_jax import errors
from sharq_jax.formats import base
from sharq_jax.formats.elements import E2M1_MAX, e2m1_round, e4m3_round

E4M3_MAX = 448.0
E4M3_MIN_SUBNORMAL = 2.0**-9
# s = amax / (448·6): maps the tensor's amax onto the largest block scale × element.
TENSOR_SCALE_DIVISOR = E4M3_MAX * E2M1_MAX


class ScaleGranularity(enum.Enum):
  """Where the NVFP4 float32 tensor scale is computed."""

  PER_TENSOR = "per_tensor"
  PER_ROW = "per_row"  # one scale per token: amax over the last (K) axis


def scale_from_amax(amax: jax.Array) -> jax.Array:
  """s = f32(amax / (448·6)) correctly rounded, or 1 where amax is 0.

  A sharded tensor's scale is this of the max of its shards' finite amax.
  """
  amax = jnp.asarray(amax, jnp.float32)
  return jnp.where(amax > 0, base.exact_divide(amax, TENSOR_SCALE_DIVISOR), 1.0).astype(jnp.float32)


def global_scale(x: jax.Array, granularity: ScaleGranularity) -> jax.Array:
  """s = amax_finite / (448·6), or 1 where the amax is 0 (shape () or (..., 1))."""
  per_row = granularity is ScaleGranularity.PER_ROW
  return scale_from_amax(base.finite_amax(x, axis=-1 if per_row else None, keepdims=per_row))


@dataclasses.dataclass(frozen=True)
class NVFP4(base.Format):
  """NVIDIA NVFP4: blocks of `block_size` E2M1 values sharing one E4M3 scale.

  Attributes:
    block_size: elements per block (16 by default; SharQ uses 32 for the shared weight
      payload and the sparse path).
    scale_granularity: per-tensor (default) or per-row float32 tensor scale.
    bad_input: what NaN/Inf in the input does (see errors.BadInput).
  """

  block_size: int = 16
  scale_granularity: ScaleGranularity = ScaleGranularity.PER_TENSOR
  bad_input: errors.BadInput = errors.BadInput.NAN
  has_tensor_scale = True

  def __post_init__(self):
    if not isinstance(self.block_size, int) or self.block_size <= 0:
      raise ValueError(f"NVFP4 block_size must be a positive int, got {self.block_size!r}")
    if not isinstance(self.scale_granularity, ScaleGranularity):
      raise ValueError(f"NVFP4 scale_granularity must be one of "
                       f"{[g.name for g in ScaleGranularity]}, got {self.scale_granularity!r}")

  def tensor_scale(self, x, given):
    if given is not None:
      return jnp.asarray(given, jnp.float32)
    return global_scale(x, self.scale_granularity)

  def encode_blocks(self, blocks, tensor_scale):
    amax = base.finite_amax(blocks, axis=-1, keepdims=True)
    ratio = jnp.minimum(base.exact_divide(amax, 6.0 * tensor_scale), E4M3_MAX)
    d = e4m3_round(ratio)
    d = jnp.where((amax > 0) & (d == 0), E4M3_MIN_SUBNORMAL, d)
    denom = d * tensor_scale
    scaled = jnp.where(d > 0, base.exact_divide(blocks, jnp.where(d > 0, denom, 1.0)), 0.0)
    codes = e2m1_round(scaled).astype(jnp.float4_e2m1fn)
    bad = base.has_bad_value(blocks, keepdims=True)
    scales = jnp.where(bad, jnp.nan, d).astype(jnp.float8_e4m3fn)
    return codes, scales[..., 0]

  def decode_blocks(self, codes, scales):
    return codes.astype(jnp.float32) * scales.astype(jnp.float32)[..., None]
