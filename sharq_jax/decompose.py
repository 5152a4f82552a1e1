"""The SharQ sparse–dense decomposition of an activation tensor (DESIGN.md §1).

    s  = amax|X| / (448·6)            (1 for formats without a tensor scale)
    X' = X / s
    S  = mask(X') ⊙ X'                 N:M backbone holding the outliers
    Ŝ  = DQ(Q_backbone(S))             block = sparse_block dense positions
    R  = X' − Ŝ                        residual against the *quantized* backbone
    R̂  = DQ(Q_residual(R))
    X ≈ s · (Ŝ + R̂)
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import math

import jax
import jax.numpy as jnp

from sharq_jax import errors
from sharq_jax.formats import base as fbase
from sharq_jax.formats.nvfp4 import ScaleGranularity, global_scale
from sharq_jax.masks import Compressed, NMPattern, compress, nm_mask, unit_mask
from sharq_jax.qtensor import QTensor


class ResidualSource(enum.Enum):
  """What the residual is measured against."""

  QUANTIZED_BACKBONE = "quantized"  # SharQ: R = X' − Ŝ
  RAW_BACKBONE = "raw"  # ablation: R = X' − S


@dataclasses.dataclass(frozen=True)
class SharQConfig:
  """How one activation tensor is decomposed.

  Attributes:
    pattern: the N:M mask of the backbone.
    backbone: format of the backbone; its block size counts dense K positions.
    residual: format of the residual.
    tensor_scale: divide by the NVFP4 global scale s first (False: s = 1).
    residual_source: measure R against Ŝ (SharQ) or against the raw S (ablation).
  """

  pattern: NMPattern
  backbone: fbase.Format
  residual: fbase.Format
  tensor_scale: bool = True
  residual_source: ResidualSource = ResidualSource.QUANTIZED_BACKBONE

  def __post_init__(self):
    if not isinstance(self.pattern, NMPattern):
      raise ValueError(f"SharQConfig.pattern must be an NMPattern, got {self.pattern!r}")
    if self.backbone.block_size % self.pattern.m:
      raise ValueError(f"backbone block {self.backbone.block_size} must be a multiple of the "
                       f"mask group m={self.pattern.m} so blocks hold whole N:M groups")

  @property
  def k_multiple(self) -> int:
    """K must be a multiple of this (every block and group whole)."""
    return math.lcm(self.pattern.m, self.backbone.block_size, self.residual.block_size)


def scaled_input(x: jax.Array, use_tensor_scale: bool,
                 given_scale: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """(X' = X / s, s) with the per-tensor NVFP4 global scale (or `given_scale`), or s = 1."""
  x = x.astype(jnp.float32)
  if not use_tensor_scale:
    return x, jnp.ones((), jnp.float32)
  s = global_scale(x, ScaleGranularity.PER_TENSOR) if given_scale is None else given_scale
  return fbase.exact_divide(x, s), s


def quantize_backbone(xp: jax.Array, pattern: NMPattern, fmt: fbase.Format, *,
                      name: str) -> tuple[jax.Array, QTensor]:
  """(mask, Q(mask ⊙ X')) with tensor scale 1, the backbone quantized densely."""
  mask = nm_mask(xp, pattern, name=name)
  sparse = jnp.where(mask, xp, 0.0)
  return mask, fbase.quantize_unchecked(sparse, fmt, tensor_scale=1.0, name=name)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Decomposition:
  """Result of `decompose`: X ≈ tensor_scale · (DQ(backbone) + DQ(residual)).

  backbone holds dense codes (zero at dropped positions); `compressed_backbone` gives
  the kept codes with their 2-bit positions, the form a sparse tensor core reads.
  """

  tensor_scale: jax.Array
  mask: jax.Array
  backbone: QTensor
  residual: QTensor
  config: SharQConfig = dataclasses.field(metadata=dict(static=True))

  def paths(self) -> tuple[jax.Array, jax.Array]:
    """(Ŝ, R̂) in the X' domain, float32."""
    return self.backbone.dequantize(), self.residual.dequantize()

  def reconstruct(self) -> jax.Array:
    """s · (Ŝ + R̂) in float32: the fake-quantized activation."""
    sparse, residual = self.paths()
    return self.tensor_scale * (sparse + residual)

  def compressed_backbone(self) -> Compressed:
    """Kept backbone codes + positions; scales stay in `backbone.scales`."""
    keep = unit_mask(jnp.where(self.mask, 1.0, 0.0), self.config.pattern)
    return compress(self.backbone.codes, keep, self.config.pattern)


def decompose(x: jax.Array, config: SharQConfig, *, name: str = "activation",
              pad: bool = False, tensor_scale: jax.Array | None = None) -> Decomposition:
  """Decomposes x (..., K) into a quantized N:M backbone and a quantized residual.

  Args:
    x: activations, any float dtype (computed in float32).
    config: mask, formats and options.
    name: names the layer in error messages.
    pad: zero-pad K to a multiple of `config.k_multiple` instead of raising.
    tensor_scale: use this s instead of computing it from x (e.g. the scale of the
      whole tensor when x is one shard of it); ignored when config.tensor_scale is off.

  Raises:
    ValueError: K is not a multiple of the mask group and both block sizes.
  """
  x = jnp.asarray(x).astype(jnp.float32)
  errors.check_finite(x, config.backbone.bad_input, name)
  return decompose_unchecked(x, config, name=name, pad=pad, tensor_scale=tensor_scale)


def decompose_unchecked(x: jax.Array, config: SharQConfig, *, name: str = "activation",
                        pad: bool = False,
                        tensor_scale: jax.Array | None = None) -> Decomposition:
  """`decompose` without the bad-input check: for callers that checked their input."""
  x = jnp.asarray(x).astype(jnp.float32)
  if not pad:
    errors.check_divisible(x.shape, config.k_multiple, name=name,
                           what="lcm of the mask group and block sizes")
  if tensor_scale is not None:
    tensor_scale = jnp.asarray(tensor_scale, jnp.float32)
  return _decompose(x, tensor_scale, config=config,
                    k_padded=errors.padded_size(x.shape[-1], config.k_multiple))


@functools.partial(jax.jit, static_argnames=("config", "k_padded"))
def _decompose(x: jax.Array, given_scale, *, config: SharQConfig,
               k_padded: int) -> Decomposition:
  x = errors.pad_last_axis(x, k_padded)
  xp, s = scaled_input(x, config.tensor_scale, given_scale)
  mask, backbone = quantize_backbone(xp, config.pattern, config.backbone, name="activation")
  if config.residual_source is ResidualSource.QUANTIZED_BACKBONE:
    reference = backbone.dequantize()
  else:
    reference = jnp.where(mask, xp, 0.0)
  residual = fbase.quantize_unchecked(xp - reference, config.residual, tensor_scale=1.0,
                            name="activation")
  return Decomposition(tensor_scale=s, mask=mask, backbone=backbone, residual=residual,
                       config=config)
