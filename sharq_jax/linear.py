"""sharq_dot: a quantized linear layer Y = X Wᵀ (+ b), reference and dispatch."""

from __future__ import annotations

import enum
import functools

import jax
import jax.numpy as jnp

from sharq_jax import errors
from sharq_jax.methods import QuantizedWeight

_HIGHEST = jax.lax.Precision.HIGHEST


class Backend(enum.Enum):
  """Where sharq_dot runs."""

  XLA = "xla"  # the reference: dequantize + float32 dots, any platform
  PALLAS = "pallas"  # fused Pallas kernels; raises if the case is unsupported
  AUTO = "auto"  # Pallas where supported, else the XLA reference


def sharq_dot_reference(x: jax.Array, w: QuantizedWeight, *, bias=None, pad: bool = False,
                        name: str = "linear") -> jax.Array:
  """XLA reference: Y = s·s_w · Σ_p (P_p · Ŵ'ᵀ) + b, float32 accumulation.

  Each activation path is multiplied by the one shared dequantized weight and the
  products are summed in float32; the output has x's dtype.
  """
  if x.shape[-1] != w.logical_k:
    raise ValueError(f"{name}: x has K={x.shape[-1]} (shape {x.shape}) but the weight "
                     f"has K={w.logical_k}")
  errors.check_finite(x, w.method.activation.bad_input, name)
  if not pad:
    errors.check_divisible(x.shape, w.method.activation.k_multiple, name=name,
                           what=f"block/group size of {w.method.name!r}")
  return _reference(x, w, bias, pad=pad)


# `name` only labels errors, which are raised before this point: keeping it out of the
# static arguments lets every layer of a model share one compilation per shape.
@functools.partial(jax.jit, static_argnames=("pad",))
def _reference(x, w: QuantizedWeight, bias, *, pad: bool):
  paths, s = w.method.activation.paths(x, pad=pad)
  return dot_paths(paths, s, w, bias=bias).astype(x.dtype)


def dot_paths(paths, s, w: QuantizedWeight, *, bias=None) -> jax.Array:
  """float32 Y = s·s_w · Σ_p (P_p · Ŵ'ᵀ) + b from already prepared activation paths."""
  w_unscaled = w.unscaled()
  acc = None
  for p in paths:
    prod = jnp.einsum("...k,nk->...n", p, w_unscaled, precision=_HIGHEST,
                      preferred_element_type=jnp.float32)
    acc = prod if acc is None else acc + prod
  y = acc * (s * w.scale())
  if bias is not None:
    y = y + jnp.asarray(bias).astype(jnp.float32)
  return y


def sharq_dot(x: jax.Array, w: QuantizedWeight, *, bias=None,
              backend: Backend | str = Backend.XLA, pad: bool = False,
              name: str = "linear") -> jax.Array:
  """Quantized linear layer: x (..., K) · Wᵀ → (..., N) in x's dtype.

  Activations are quantized (or decomposed) on the fly by the weight's method; the
  weight was quantized once by `methods.quantize_weight`. Works under jit and vmap.

  Args:
    x: activations (..., K).
    w: a QuantizedWeight (its method decides the activation quantizer).
    bias: optional (N,) bias, added in float32.
    backend: Backend.XLA (reference), PALLAS (raise if unsupported) or AUTO.
    pad: zero-pad K to the block/group multiple instead of raising.
    name: names the layer in error messages.
  """
  backend = Backend(backend)
  if backend is not Backend.XLA:
    from sharq_jax.kernels import dispatch  # pylint: disable=g-import-not-at-top
    if dispatch.supports(x, w, pad=pad):
      return dispatch.sharq_dot_pallas(x, w, bias=bias)
    if backend is Backend.PALLAS:
      raise ValueError(f"{name}: the Pallas backend does not support method "
                       f"{w.method.name!r} with x {x.shape} {x.dtype} on "
                       f"{jax.default_backend()}: {dispatch.why_unsupported(x, w, pad=pad)}")
  return sharq_dot_reference(x, w, bias=bias, pad=pad, name=name)
