"""The packed FP4 weight the SharQ GEMM streams: 0.53 byte per parameter.

    codes     uint8 (N, K/2): two E2M1 nibbles per byte, low nibble = even K index
    scales    uint8 (N, K/32): E4M3 bits of the block-32 scales
    scale     float32 (): the per-tensor weight scale s_w

Invariant: expand_weight(p)[n, k] = e2m1(codes nibble (n, k)) · e4m3(scales[n, k//32])
= Ŵ'[n, k], the weight without s_w, exactly as sharq_jax's QuantizedWeight.unscaled().
Kernels view `codes` as (N, K/32, 16): one row of 16 bytes per 32-wide K block.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from sharq_jax import formats
from sharq_jax.kernels import common

WEIGHT_BLOCK = 32


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class PackedWeight:
  """A weight W (N, K) in the SharQ kernel layout (see the module docstring)."""

  codes: jax.Array
  scales: jax.Array
  scale: jax.Array

  @property
  def n(self) -> int:
    return self.codes.shape[0]

  @property
  def k(self) -> int:
    return self.codes.shape[1] * 2

  @property
  def shape(self) -> tuple[int, int]:
    return (self.n, self.k)

  def nbytes(self) -> int:
    """Bytes streamed per use: codes + scales (+ 4 for s_w)."""
    return int(self.codes.size + self.scales.size + 4)


def _from_qtensor(q) -> PackedWeight:
  fmt = q.fmt
  if not (isinstance(fmt, formats.NVFP4) and fmt.block_size == WEIGHT_BLOCK):
    raise ValueError(f"pack_weight: expected an NVFP4 block-{WEIGHT_BLOCK} QTensor, got "
                     f"{getattr(fmt, 'name', fmt)}")
  if q.codes.ndim != 2:
    raise ValueError(f"pack_weight: expected a 2-D (N, K) weight, got codes {q.codes.shape}")
  if q.logical_k != q.codes.shape[-1]:
    raise ValueError(f"pack_weight: padded weights (K={q.logical_k} padded to "
                     f"{q.codes.shape[-1]}) are not supported by the kernels")
  nibbles = formats.e2m1_to_nibbles(q.codes)
  codes = formats.pack_nibbles(nibbles)
  scale_bits = jax.lax.bitcast_convert_type(q.scales.astype(jnp.float8_e4m3fn), jnp.uint8)
  return PackedWeight(codes=codes, scales=scale_bits,
                      scale=jnp.asarray(q.tensor_scale, jnp.float32).reshape(()))


def pack_weight(w) -> PackedWeight:
  """Packs a quantized weight for the kernels.

  Args:
    w: a sharq_jax QuantizedWeight whose weight is NVFP4 block 32 (the sharq-nvfp4
      family), or a QTensor of that format, or an already PackedWeight.

  Raises:
    ValueError: another weight format, a padded K, or not 2-D.
  """
  if isinstance(w, PackedWeight):
    return w
  data = getattr(w, "data", None)
  if data is not None and hasattr(w, "method"):
    if not hasattr(data, "fmt"):
      raise ValueError(f"pack_weight: method {w.method.name!r} stores no FP4 QTensor")
    return _from_qtensor(data)
  if hasattr(w, "fmt") and hasattr(w, "codes"):
    return _from_qtensor(w)
  raise ValueError(f"pack_weight: cannot pack {type(w).__name__}")


def pack_weight_from_float(w: jax.Array) -> PackedWeight:
  """Quantizes a float weight (N, K) with NVFP4 block 32 (per-tensor s_w) and packs it."""
  return _from_qtensor(formats.quantize(w, formats.NVFP4(WEIGHT_BLOCK), name="weight"))


def expand_weight(p: PackedWeight, dtype=jnp.float16) -> jax.Array:
  """Ŵ' (N, K) without s_w (exact in float16, bfloat16 and float32)."""
  lo, hi = common.decode_nibbles_f16(p.codes, gpu=False)
  vals = jnp.stack([lo, hi], axis=-1).reshape(p.n, p.k).astype(jnp.float32)
  d = common.decode_e4m3_scale_f32(p.scales)  # (N, K/32)
  d = jnp.repeat(d * np.float32(2.0**-common.NIBBLE_F16_EXPONENT), WEIGHT_BLOCK, axis=-1)
  return (vals * d).astype(dtype)
