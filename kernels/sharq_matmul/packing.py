"""The packed FP4 weight the SharQ GEMM streams: 0.53 byte per parameter.

    codes     uint8 (N, K/2): two E2M1 nibbles per byte, low nibble = even K index
    scales    uint8 (N, K/32): E4M3 bits of the block-32 scales
    scale     float32 (): the per-tensor weight scale s_w

Invariant: expand_weight(p)[n, k] = e2m1(codes nibble (n, k)) · e4m3(scales[n, k//32])
= Ŵ'[n, k], the weight without s_w, exactly as sharq_jax's QuantizedWeight.unscaled().
Kernels view `codes` as (N, K/32, 16): one row of 16 bytes per 32-wide K block.

That is WeightLayout.ROWS. WeightLayout.TILES_64 stores the same bytes tile by tile:
codes (N/64, K/64, 64, 32) and scales (N/64, K/64, 64, 2), each 64-row × 64-K tile
contiguous (2 KB of codes), so that the MMA GEMV, which reads one such tile per program
and K step, streams contiguous memory instead of 32 bytes from each of 64 rows
(kernels/NOTES.md, v11). `to_layout` converts; kernels that need ROWS convert a tiled
weight first (an extra pass over it: store the layout of the kernel you run most).
"""

from __future__ import annotations

import dataclasses
import enum

import jax
import jax.numpy as jnp
import numpy as np

from sharq_jax import formats
from sharq_jax.kernels import common

WEIGHT_BLOCK = 32
TILE = 64  # rows and K of a WeightLayout.TILES_64 tile


class WeightLayout(enum.Enum):
  """How PackedWeight stores its code and scale bytes (see the module docstring)."""

  ROWS = "rows"  # codes (N, K/2), scales (N, K/32)
  TILES_64 = "tiles_64"  # codes (N/64, K/64, 64, 32), scales (N/64, K/64, 64, 2)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class PackedWeight:
  """A weight W (N, K) in the SharQ kernel layout (see the module docstring)."""

  codes: jax.Array
  scales: jax.Array
  scale: jax.Array
  layout: WeightLayout = dataclasses.field(default=WeightLayout.ROWS,
                                           metadata=dict(static=True))

  @property
  def n(self) -> int:
    """Output features N."""
    if self.layout is WeightLayout.TILES_64:
      return self.codes.shape[0] * TILE
    return self.codes.shape[0]

  @property
  def k(self) -> int:
    """Input features K."""
    if self.layout is WeightLayout.TILES_64:
      return self.codes.shape[1] * TILE
    return self.codes.shape[1] * 2

  @property
  def shape(self) -> tuple[int, int]:
    return (self.n, self.k)

  def nbytes(self) -> int:
    """Bytes streamed per use: codes + scales (+ 4 for s_w)."""
    return int(self.codes.size + self.scales.size + 4)

  def to_layout(self, layout: WeightLayout) -> PackedWeight:
    """The same weight stored in `layout` (self if it already is; else a transpose by
    XLA, one pass over the bytes)."""
    layout = WeightLayout(layout)
    if layout is self.layout:
      return self
    n, k = self.shape
    if layout is WeightLayout.TILES_64:
      if n % TILE or k % TILE:
        raise ValueError(f"WeightLayout.TILES_64 needs N and K multiples of {TILE}, got "
                         f"N={n}, K={k}")
      return PackedWeight(codes=_tile(self.codes, TILE // 2),
                          scales=_tile(self.scales, TILE // WEIGHT_BLOCK),
                          scale=self.scale, layout=layout)
    return PackedWeight(codes=_untile(self.codes), scales=_untile(self.scales),
                        scale=self.scale, layout=layout)


def rows_weight(w: PackedWeight) -> PackedWeight:
  """w in WeightLayout.ROWS, for the kernels that read rows only (a transpose by XLA if
  w is tiled, else w itself)."""
  return w.to_layout(WeightLayout.ROWS)


def _tile(a: jax.Array, width: int) -> jax.Array:
  """(N, C) rows → (N/64, C/width, 64, width) tiles, `width` columns per 64 K."""
  n, c = a.shape
  return a.reshape(n // TILE, TILE, c // width, width).transpose(0, 2, 1, 3)


def _untile(a: jax.Array) -> jax.Array:
  """The inverse of _tile."""
  tn, tk, rows, width = a.shape
  return a.transpose(0, 2, 1, 3).reshape(tn * rows, tk * width)


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


def pack_weight(w, layout: WeightLayout | None = None) -> PackedWeight:
  """Packs a quantized weight for the kernels.

  Args:
    w: a sharq_jax QuantizedWeight whose weight is NVFP4 block 32 (the sharq-nvfp4
      family), or a QTensor of that format, or an already PackedWeight.
    layout: how the bytes are stored (WeightLayout; TILES_64 for the MMA GEMV at
      decode). None: a PackedWeight keeps its own, anything else is packed in ROWS.

  Raises:
    ValueError: another weight format, a padded K, or not 2-D; TILES_64 with N or K
      not a multiple of 64.
  """
  if isinstance(w, PackedWeight):
    return w if layout is None else w.to_layout(layout)
  layout = WeightLayout.ROWS if layout is None else layout
  data = getattr(w, "data", None)
  if data is not None and hasattr(w, "method"):
    if not hasattr(data, "fmt"):
      raise ValueError(f"pack_weight: method {w.method.name!r} stores no FP4 QTensor")
    return _from_qtensor(data).to_layout(layout)
  if hasattr(w, "fmt") and hasattr(w, "codes"):
    return _from_qtensor(w).to_layout(layout)
  raise ValueError(f"pack_weight: cannot pack {type(w).__name__}")


def pack_weight_from_float(w: jax.Array,
                           layout: WeightLayout = WeightLayout.ROWS) -> PackedWeight:
  """Quantizes a float weight (N, K) with NVFP4 block 32 (per-tensor s_w) and packs it
  in `layout`."""
  q = formats.quantize(w, formats.NVFP4(WEIGHT_BLOCK), name="weight")
  return _from_qtensor(q).to_layout(layout)


def expand_weight(p: PackedWeight, dtype=jnp.float16) -> jax.Array:
  """Ŵ' (N, K) without s_w (exact in float16, bfloat16 and float32), from either layout."""
  p = p.to_layout(WeightLayout.ROWS)
  lo, hi = common.decode_nibbles_f16(p.codes, gpu=False)
  vals = jnp.stack([lo, hi], axis=-1).reshape(p.n, p.k).astype(jnp.float32)
  d = common.decode_e4m3_scale_f32(p.scales)  # (N, K/32)
  d = jnp.repeat(d * np.float32(2.0**-common.NIBBLE_F16_EXPONENT), WEIGHT_BLOCK, axis=-1)
  return (vals * d).astype(dtype)
