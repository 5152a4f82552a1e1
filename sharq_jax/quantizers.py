"""Activation and weight quantizers: the building blocks of the methods registry.

An activation quantizer maps x (..., K) to *paths* — float32 tensors in the X' = X/s
domain whose sum approximates X' — and the tensor scale s. A linear layer multiplies
each path by the same dequantized weight and scales once:
    Y = s · s_w · Σ_p (P_p · Ŵ'ᵀ).
"""

from __future__ import annotations

import abc
import math
import dataclasses

import jax
import jax.numpy as jnp

from sharq_jax import decompose as dec
from sharq_jax import errors
from sharq_jax.formats import base as fbase
from sharq_jax.masks import NMPattern, nm_mask

Paths = tuple[tuple[jax.Array, ...], jax.Array]


def _prepare(x: jax.Array, multiple: int, *, name: str, pad: bool) -> jax.Array:
  """float32 x, zero-padded along K (pad=True) or checked to be a multiple."""
  x = jnp.asarray(x).astype(jnp.float32)
  if pad:
    return errors.pad_last_axis(x, errors.padded_size(x.shape[-1], multiple))
  errors.check_divisible(x.shape, multiple, name=name, what="block/group size")
  return x


def _trim(paths: tuple[jax.Array, ...], k: int) -> tuple[jax.Array, ...]:
  return tuple(p[..., :k] for p in paths)


class ActivationQuantizer(abc.ABC):
  """Maps activations to float32 paths in the X' domain plus the tensor scale.

  `paths` does not check for NaN/Inf itself: entry points (sharq_dot,
  methods.fake_quant_activation) check once with `bad_input` before staging.
  """

  @property
  def bad_input(self) -> errors.BadInput:
    """The bad-input policy of the quantizer's format."""
    fmt = getattr(self, "fmt", None)
    return fmt.bad_input if fmt is not None else errors.BadInput.NAN

  @property
  def k_multiple(self) -> int:
    """K (and every shard of K) must be a multiple of this: whole blocks and groups."""
    fmt = getattr(self, "fmt", None)
    pattern = getattr(self, "pattern", None)
    return math.lcm(fmt.block_size if fmt else 1, pattern.m if pattern else 1)

  @abc.abstractmethod
  def paths(self, x: jax.Array, *, name: str = "activation", pad: bool = False) -> Paths:
    """((P_1, …), s) with X ≈ s · Σ P_p; each P has x's shape, float32."""

  def fake_quant(self, x: jax.Array, *, name: str = "activation",
                 pad: bool = False) -> jax.Array:
    """The dequantized activation s · Σ P_p, float32."""
    paths, s = self.paths(x, name=name, pad=pad)
    total = paths[0]
    for p in paths[1:]:
      total = total + p
    return s * total


@dataclasses.dataclass(frozen=True)
class Unquantized(ActivationQuantizer):
  """Leaves activations unchanged (the bf16 baseline)."""

  def paths(self, x, *, name="activation", pad=False):
    del name, pad
    return (jnp.asarray(x).astype(jnp.float32),), jnp.ones((), jnp.float32)


@dataclasses.dataclass(frozen=True)
class Dense(ActivationQuantizer):
  """Single-path quantization with one format (NVFP4, MXFP4 or HiF4)."""

  fmt: fbase.Format

  def paths(self, x, *, name="activation", pad=False):
    q = fbase.quantize_unchecked(x, self.fmt, pad=pad, name=name)
    return (q.dequantize(apply_tensor_scale=False),), q.tensor_scale


@dataclasses.dataclass(frozen=True)
class SharQ(ActivationQuantizer):
  """The SharQ decomposition: paths (Ŝ, R̂); `sparse_only` keeps Ŝ alone (ablation)."""

  config: dec.SharQConfig
  sparse_only: bool = False

  @property
  def bad_input(self) -> errors.BadInput:
    return self.config.backbone.bad_input

  @property
  def k_multiple(self) -> int:
    return self.config.k_multiple

  def paths(self, x, *, name="activation", pad=False):
    k = jnp.shape(x)[-1]
    d = dec.decompose_unchecked(x, self.config, name=name, pad=pad)
    paths = d.paths()[:1] if self.sparse_only else d.paths()
    return _trim(paths, k), d.tensor_scale


@dataclasses.dataclass(frozen=True)
class DenseDense(ActivationQuantizer):
  """Ablation: Q(X') + Q(X' − Q(X')), both dense with `fmt`."""

  fmt: fbase.Format
  tensor_scale: bool = True

  def paths(self, x, *, name="activation", pad=False):
    k = jnp.shape(x)[-1]
    xp, s = dec.scaled_input(_prepare(x, self.fmt.block_size, name=name, pad=pad),
                             self.tensor_scale)
    first = fbase.quantize_unchecked(xp, self.fmt, tensor_scale=1.0, name=name).dequantize()
    second = fbase.quantize_unchecked(xp - first, self.fmt, tensor_scale=1.0,
                                       name=name).dequantize()
    return _trim((first, second), k), s


@dataclasses.dataclass(frozen=True)
class SparseSparse(ActivationQuantizer):
  """Ablation: backbone Ŝ₁ of X' plus a second N:M backbone Ŝ₂ of X' − Ŝ₁."""

  pattern: NMPattern
  fmt: fbase.Format
  tensor_scale: bool = True

  def paths(self, x, *, name="activation", pad=False):
    k = jnp.shape(x)[-1]

    x = _prepare(x, math.lcm(self.pattern.m, self.fmt.block_size), name=name, pad=pad)
    xp, s = dec.scaled_input(x, self.tensor_scale)
    _, first = dec.quantize_backbone(xp, self.pattern, self.fmt, name=name)
    first = first.dequantize()
    _, second = dec.quantize_backbone(xp - first, self.pattern, self.fmt, name=name)
    return _trim((first, second.dequantize()), k), s


@dataclasses.dataclass(frozen=True)
class Prune(ActivationQuantizer):
  """Naive prune-then-quantize: Q(mask(X') ⊙ X') with a dense format."""

  pattern: NMPattern
  fmt: fbase.Format
  tensor_scale: bool = True

  def paths(self, x, *, name="activation", pad=False):
    k = jnp.shape(x)[-1]

    x = _prepare(x, math.lcm(self.pattern.m, self.fmt.block_size), name=name, pad=pad)
    xp, s = dec.scaled_input(x, self.tensor_scale)
    pruned = jnp.where(nm_mask(xp, self.pattern, name=name), xp, 0.0)
    q = fbase.quantize_unchecked(pruned, self.fmt, tensor_scale=1.0, name=name)
    return _trim((q.dequantize(),), k), s


class WeightQuantizer(abc.ABC):
  """Turns a weight (N, K) into stored data and reads it back without its scale."""

  @property
  def k_multiple(self) -> int:
    """K (and every shard of K) must be a multiple of this."""
    fmt = getattr(self, "fmt", None)
    return fmt.block_size if fmt else 1

  def nbytes(self, data) -> float:
    """Stored bytes: the packed payload of a QTensor, else the array's own bytes."""
    return float(data.nbytes)

  @abc.abstractmethod
  def quantize(self, w: jax.Array, *, name: str = "weight", pad: bool = False):
    """Stored form of w (an array or a QTensor)."""

  @abc.abstractmethod
  def unscaled(self, data) -> jax.Array:
    """Ŵ' (N, K) float32: the weight without its tensor scale."""

  @abc.abstractmethod
  def scale(self, data) -> jax.Array:
    """s_w, float32 scalar."""


@dataclasses.dataclass(frozen=True)
class UnquantizedWeight(WeightQuantizer):
  """Keeps the weight as it is (bf16 baseline)."""

  def quantize(self, w, *, name="weight", pad=False):
    del name, pad
    return jnp.asarray(w)

  def unscaled(self, data):
    return data.astype(jnp.float32)

  def scale(self, data):
    del data
    return jnp.ones((), jnp.float32)


@dataclasses.dataclass(frozen=True)
class DenseWeight(WeightQuantizer):
  """Quantizes the weight once with `fmt` along K (its last axis)."""

  fmt: fbase.Format

  def quantize(self, w, *, name="weight", pad=False):
    return fbase.quantize(w, self.fmt, pad=pad, name=name)

  def nbytes(self, data) -> float:
    return float(data.nbytes())

  def unscaled(self, data):
    return data.dequantize(apply_tensor_scale=False)

  def scale(self, data):
    return data.tensor_scale
