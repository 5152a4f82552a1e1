"""Straight-through estimators: fake quantization that keeps gradients flowing."""

from __future__ import annotations

from typing import Callable

import jax

from sharq_jax import methods


def straight_through(fn: Callable[[jax.Array], jax.Array]) -> Callable[[jax.Array], jax.Array]:
  """Wraps fn so its forward value is fn(x) (cast to x's dtype) and its vjp is identity."""

  @jax.custom_vjp
  def wrapped(x):
    return fn(x).astype(x.dtype)

  def forward(x):
    return wrapped(x), None

  def backward(_, g):
    return (g,)

  wrapped.defvjp(forward, backward)
  return wrapped


def fake_quant_activation_ste(x: jax.Array, method: "str | methods.Method") -> jax.Array:
  """Fake-quantized activations with a straight-through (identity) gradient."""
  method = methods.get_method(method)
  return straight_through(method.activation.fake_quant)(x)


def fake_quant_weight_ste(w: jax.Array, method: "str | methods.Method") -> jax.Array:
  """Fake-quantized weight with a straight-through (identity) gradient."""
  method = methods.get_method(method)
  return straight_through(lambda v: methods.fake_quant_weight(v, method))(w)
