"""NNX linear layer whose weight is quantized once by a SharQ method."""

from __future__ import annotations

import jax
from flax import nnx

from sharq_jax import linear, methods
from sharq_jax.nn.linear import Linear


class QuantizedParam(nnx.Variable):
  """Holds a ``methods.QuantizedWeight`` (packed codes + scales, a pytree)."""


class SharQLinear(nnx.Module):
  """``y = sharq_dot(x, Ŵ) + b``: activations quantized on the fly by the
  weight's method, output in ``x``'s dtype."""

  def __init__(self, qweight: methods.QuantizedWeight, bias: jax.Array | None,
               *, name: str = "linear",
               backend: linear.Backend = linear.Backend.XLA):
    self.qweight = QuantizedParam(qweight)
    self.bias = None if bias is None else nnx.Param(bias)
    self.name = name
    self.backend = backend

  @classmethod
  def from_linear(cls, layer: Linear, method: str | methods.Method, *,
                  name: str = "linear",
                  backend: linear.Backend = linear.Backend.XLA) -> SharQLinear:
    """Quantizes ``layer``'s weight (out, in) once with ``method``."""
    qw = methods.quantize_weight(layer.weight[...], method, name=name)
    bias = None if layer.bias is None else layer.bias[...]
    return cls(qw, bias, name=name, backend=backend)

  @property
  def method(self) -> methods.Method:
    """The quantization method of this layer."""
    return self.qweight.get_value().method

  def weight_nbytes(self) -> float:
    """Stored bytes of the weight (packed payload)."""
    return self.qweight.get_value().nbytes()

  def __call__(self, x: jax.Array) -> jax.Array:
    bias = None if self.bias is None else self.bias[...]
    return linear.sharq_dot(x, self.qweight.get_value(), bias=bias,
                            backend=self.backend, name=self.name)
