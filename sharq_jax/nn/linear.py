"""Plain (unquantized) NNX linear layer, stored in Hugging Face (out, in) layout."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

HIGHEST = jax.lax.Precision.HIGHEST


class Linear(nnx.Module):
  """``y = x Wᵀ + b`` with ``W`` of shape (out_features, in_features).

  The product accumulates in float32 and is returned in ``x``'s dtype.
  """

  def __init__(self, in_features: int, out_features: int, *, use_bias: bool,
               dtype, rngs: nnx.Rngs):
    init = nnx.initializers.normal(0.02)
    self.weight = nnx.Param(init(rngs.params(), (out_features, in_features),
                                 dtype))
    self.bias = (nnx.Param(jnp.zeros((out_features,), dtype))
                 if use_bias else None)

  def __call__(self, x: jax.Array) -> jax.Array:
    w = self.weight[...]
    y = jnp.einsum("...k,nk->...n", x.astype(w.dtype), w, precision=HIGHEST,
                   preferred_element_type=jnp.float32)
    if self.bias is not None:
      y = y + self.bias[...].astype(jnp.float32)
    return y.astype(x.dtype)
