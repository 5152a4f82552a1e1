"""QTensor: a block-quantized tensor as a JAX pytree."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class QTensor:
  """A tensor quantized in blocks of `fmt.block_size` along its last axis.

  Invariant (for every index i along K, block b = i // B, B = fmt.block_size):

      dequantize(q)[..., i] = v(codes[..., i]) · σ(scales[..., b]) · tensor_scale[...]
      |x[..., i] − dequantize(q)[..., i]| ≤ ½ · grid step of block b  (no saturation)

  where v decodes an element code (E2M1 value, or S1P2 value for HiF4) and σ decodes a
  block scale (E4M3, E8M0, or the HiF4 metadata word, which also carries the per-8 and
  per-4 exponent bumps). A block whose input held NaN or Inf has a NaN scale, so
  `dequantize` returns NaN for it (DESIGN.md §2.7). `codes` is padded along K to a
  multiple of the block size when quantize was asked to pad; `logical_k` is the
  caller's K and `dequantize` slices back to it.

  Attributes:
    codes: (..., Kp) element codes: float4_e2m1fn, or uint8 S1P2 nibbles for HiF4.
    scales: (..., Kp // B) block scales in the format's scale dtype.
    tensor_scale: float32, shape () (per tensor) or (..., 1) (per row); 1 for formats
      without a tensor scale.
    fmt: the format (static metadata).
    logical_k: K before padding (static metadata).
  """

  codes: jax.Array
  scales: jax.Array
  tensor_scale: jax.Array
  fmt: Any = dataclasses.field(metadata=dict(static=True))
  logical_k: int = dataclasses.field(metadata=dict(static=True))

  @property
  def shape(self) -> tuple[int, ...]:
    """Logical shape of the tensor this QTensor stands for."""
    return (*self.codes.shape[:-1], self.logical_k)

  def dequantize(self, *, apply_tensor_scale: bool = True) -> jax.Array:
    """Float32 values; without the tensor scale when `apply_tensor_scale` is False."""
    return _dequantize(self, apply_tensor_scale=apply_tensor_scale)

  def _dequantize_unjitted(self, apply_tensor_scale: bool) -> jax.Array:
    kp = self.codes.shape[-1]
    blocks = self.codes.reshape(*self.codes.shape[:-1], kp // self.fmt.block_size,
                                self.fmt.block_size)
    values = self.fmt.decode_blocks(blocks, self.scales).reshape(self.codes.shape)
    if apply_tensor_scale:
      values = values * self.tensor_scale
    return values[..., :self.logical_k]

  def payload_bits(self) -> dict[str, int]:
    """Bits stored per component (codes packed 4 bits each), for memory accounting."""
    n_codes = self.codes.size
    n_scales = self.scales.size
    return dict(codes=4 * n_codes,
                scales=self.fmt.scale_bits * n_scales,
                tensor_scale=32 * self.tensor_scale.size if self.fmt.has_tensor_scale else 0)

  def nbytes(self) -> float:
    """Bytes of the packed payload: 4-bit codes, block scales and tensor scale."""
    return sum(self.payload_bits().values()) / 8

  def bits_per_value(self) -> float:
    """Average stored bits per logical element, scales included."""
    n_logical = self.codes.size // self.codes.shape[-1] * self.logical_k
    return sum(self.payload_bits().values()) / n_logical


@functools.partial(jax.jit, static_argnames=("apply_tensor_scale",))
def _dequantize(q: QTensor, *, apply_tensor_scale: bool) -> jax.Array:
  return q._dequantize_unjitted(apply_tensor_scale)  # pylint: disable=protected-access
