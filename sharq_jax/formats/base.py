"""The Format interface and the format-generic quantize/dequantize."""

from __future__ import annotations

import abc
import functools

import jax
import jax.numpy as jnp

from sharq_jax import errors
from sharq_jax.formats import division
from sharq_jax.qtensor import QTensor


def _barrier_divide(a: jax.Array, b: jax.Array) -> jax.Array:
  # XLA on CPU divides with the IEEE instruction, but its simplifier turns a division
  # by a constant or a broadcast scalar into a multiplication by a rounded reciprocal;
  # hiding the full-shape divisor behind an optimization barrier keeps the division.
  return a / jax.lax.optimization_barrier(b)


def exact_divide(a: jax.Array, b: jax.Array | float) -> jax.Array:
  """f32(a / b), correctly rounded (IEEE), as NUMERICS.md requires, on every backend.

  On CPU: XLA's IEEE division, protected from the reciprocal rewrite (2.4× faster
  than the integer path there); XLA's CPU code flushes subnormal operands and results
  to zero, so there the quotient is IEEE for normal numbers only. Elsewhere:
  `division.divide`, exact integer long division (subnormals included), because on the
  H200 XLA's fused kernels divide approximately (1-ulp errors in tensor scales and
  scaled values seen with jax 0.11.2). tests/test_division.py checks both against
  NumPy. Not differentiable on GPU (integer ops): use sharq_jax.ste for training.
  """
  a = jnp.asarray(a, jnp.float32)
  b = jnp.asarray(b, jnp.float32)
  shape = jnp.broadcast_shapes(a.shape, b.shape)
  a, b = jnp.broadcast_to(a, shape), jnp.broadcast_to(b, shape)
  return jax.lax.platform_dependent(a, b, cpu=_barrier_divide, default=division.divide)


def finite_amax(x: jax.Array, axis=None, keepdims: bool = False) -> jax.Array:
  """max|x| over the finite entries only (0 where there are none)."""
  return jnp.max(jnp.where(jnp.isfinite(x), jnp.abs(x), 0.0), axis=axis,
                 keepdims=keepdims, initial=0.0)


def has_bad_value(x: jax.Array, axis=-1, keepdims: bool = False) -> jax.Array:
  """True where a reduction over `axis` meets a NaN or Inf."""
  return jnp.any(~jnp.isfinite(x), axis=axis, keepdims=keepdims)


class Format(abc.ABC):
  """A block format: how a block of `block_size` float32 values becomes codes + scale.

  Subclasses are frozen dataclasses; they are static (hashable) metadata of a QTensor.
  """

  block_size: int
  bad_input: errors.BadInput

  scale_bits: int = 8
  """Bits of one block scale (or metadata word)."""

  has_tensor_scale: bool = False
  """Whether a float32 tensor scale is part of the format (NVFP4)."""

  @property
  def name(self) -> str:
    """Short human-readable name, e.g. 'nvfp4/16'."""
    return f"{type(self).__name__.lower()}/{self.block_size}"

  def tensor_scale(self, x: jax.Array, given: jax.Array | float | None) -> jax.Array:
    """The float32 tensor scale of x; formats without one return 1."""
    del x, given
    return jnp.ones((), jnp.float32)

  @abc.abstractmethod
  def encode_blocks(self, blocks: jax.Array, tensor_scale: jax.Array):
    """(..., nb, B) float32 -> (codes (..., nb, B), scales (..., nb))."""

  @abc.abstractmethod
  def decode_blocks(self, codes: jax.Array, scales: jax.Array) -> jax.Array:
    """Inverse of encode_blocks without the tensor scale: float32 (..., nb, B)."""


@functools.partial(jax.jit, static_argnames=("fmt", "k_padded"))
def _quantize_blocks(x: jax.Array, tensor_scale, *, fmt: Format, k_padded: int):
  """Jitted body of quantize: x is float32 (..., K); returns (codes, scales, s)."""
  x = errors.pad_last_axis(x, k_padded)
  s = fmt.tensor_scale(x, tensor_scale)
  blocks = x.reshape(*x.shape[:-1], k_padded // fmt.block_size, fmt.block_size)
  s_blocks = s[..., None] if s.ndim else s
  codes, scales = fmt.encode_blocks(blocks, s_blocks)
  return codes.reshape(x.shape), scales, s


def quantize(x: jax.Array, fmt: Format, *, tensor_scale=None, pad: bool = False,
             name: str = "tensor") -> QTensor:
  """Quantizes x along its last axis in blocks of `fmt.block_size`.

  Args:
    x: array (..., K), any float dtype; computed in float32.
    fmt: an NVFP4, MXFP4 or HiF4 format.
    tensor_scale: an explicit float32 tensor scale (scalar or broadcastable to
      (..., 1)); None computes it as the format prescribes.
    pad: zero-pad K up to a multiple of the block instead of raising.
    name: names the tensor or layer in error messages.

  Returns:
    A QTensor with `dequantize(q) ≈ x` (see its docstring for the exact invariant).

  Raises:
    ValueError: K is not a multiple of the block size and pad is False.
  """
  x = jnp.asarray(x).astype(jnp.float32)
  errors.check_finite(x, fmt.bad_input, name)
  return quantize_unchecked(x, fmt, tensor_scale=tensor_scale, pad=pad, name=name)


def quantize_unchecked(x: jax.Array, fmt: Format, *, tensor_scale=None, pad: bool = False,
                       name: str = "tensor") -> QTensor:
  """`quantize` without the bad-input check: for callers that checked their input."""
  x = jnp.asarray(x).astype(jnp.float32)
  k = x.shape[-1] if x.ndim else 0
  if not pad:
    errors.check_divisible(x.shape, fmt.block_size, name=name,
                           what=f"{fmt.name} block size")
  if tensor_scale is not None:
    tensor_scale = jnp.asarray(tensor_scale, jnp.float32)
  codes, scales, s = _quantize_blocks(x, tensor_scale, fmt=fmt,
                                      k_padded=errors.padded_size(k, fmt.block_size))
  return QTensor(codes=codes, scales=scales, tensor_scale=s, fmt=fmt, logical_k=k)


def dequantize(q: QTensor, *, apply_tensor_scale: bool = True) -> jax.Array:
  """Float32 values of a QTensor (see QTensor.dequantize)."""
  return q.dequantize(apply_tensor_scale=apply_tensor_scale)


def quantize_dequantize(x: jax.Array, fmt: Format, **kwargs) -> jax.Array:
  """dequantize(quantize(x, fmt, **kwargs)) in float32: the fake-quantized tensor."""
  return quantize(x, fmt, **kwargs).dequantize()
