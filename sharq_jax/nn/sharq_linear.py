"""NNX linear layer whose weight is quantized once by a SharQ method."""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
from flax import nnx

from sharq_jax import linear, methods
from sharq_jax.nn.linear import Linear

if TYPE_CHECKING:  # the kernels are imported where a layer packs for them
  from sharq_jax.kernels.sharq_matmul import WeightLayout


class QuantizedParam(nnx.Variable):
  """Holds a ``methods.QuantizedWeight`` (packed codes + scales, a pytree)."""


class PackedParam(nnx.Variable):
  """The weight in the Pallas kernels' layout (a kernels PackedWeight), packed once."""


def _kernels_take(qweight: methods.QuantizedWeight, backend: linear.Backend,
                  interpret: bool) -> bool:
  """Whether this layer will call the Pallas kernels, so a packed copy pays."""
  if backend is linear.Backend.XLA:
    return False
  if backend is linear.Backend.AUTO and not interpret and jax.default_backend() != "gpu":
    return False  # AUTO falls back to the XLA reference off GPU
  from sharq_jax.kernels import dispatch  # pylint: disable=g-import-not-at-top
  return dispatch.why_weight_unsupported(qweight) is None


def _kernel_layout(weight_layout: WeightLayout | str | None) -> WeightLayout | None:
  """The WeightLayout asked for (None: the kernels' default, ROWS); an unknown name
  raises here, when the layer is built, whatever its backend."""
  if weight_layout is None:
    return None
  from sharq_jax.kernels.sharq_matmul import WeightLayout  # pylint: disable=g-import-not-at-top,redefined-outer-name
  return WeightLayout(weight_layout)


def _pack(qweight: methods.QuantizedWeight, weight_layout: WeightLayout | None):
  """The kernels' copy in weight_layout, or in ROWS where it is None or a tiled layout
  does not tile the weight (N or K not a multiple of 64)."""
  from sharq_jax.kernels.sharq_matmul import pack_weight  # pylint: disable=g-import-not-at-top
  from sharq_jax.kernels.sharq_matmul.packing import TILE  # pylint: disable=g-import-not-at-top
  packed = pack_weight(qweight)
  if weight_layout is None or packed.n % TILE or packed.k % TILE:
    return packed
  return packed.to_layout(weight_layout)


class SharQLinear(nnx.Module):
  """``y = sharq_dot(x, Ŵ) + b``: activations quantized on the fly by the
  weight's method, output in ``x``'s dtype.

  With backend PALLAS or AUTO (on a GPU) and a weight the kernels take, the layer also
  keeps the weight packed in the kernels' layout (``packed``, 0.53 byte/param), made
  once here instead of on every call; ``qweight`` stays for the XLA fallback and for
  sharding. ``interpret`` runs the kernels in Pallas interpret mode (CPU tests).

  ``weight_layout`` (a kernels ``WeightLayout`` or its value; None: ROWS) stores that
  copy tile by tile with ``WeightLayout.TILES_64``, which the GEMVs stream faster at
  M = 1-4 (the H200, kernels/NOTES.md v11-v12: the MMA GEMV at M = 1-2 and in fast mode
  at M = 4, the int8 GEMV in exact mode at M = 3-4), while M > 4 pays one conversion
  pass per call. A weight whose N or K is not a multiple of 64 keeps ROWS.
  """

  def __init__(self, qweight: methods.QuantizedWeight, bias: jax.Array | None,
               *, name: str = "linear",
               backend: linear.Backend = linear.Backend.XLA, interpret: bool = False,
               weight_layout: WeightLayout | str | None = None):
    self.qweight = QuantizedParam(qweight)
    self.bias = None if bias is None else nnx.Param(bias)
    self.name = name
    self.backend = linear.Backend(backend)
    self.interpret = interpret
    layout = _kernel_layout(weight_layout)
    self.packed = (PackedParam(_pack(qweight, layout))
                   if _kernels_take(qweight, self.backend, interpret) else None)

  @classmethod
  def from_linear(cls, layer: Linear, method: str | methods.Method, *,
                  name: str = "linear",
                  backend: linear.Backend = linear.Backend.XLA,
                  interpret: bool = False,
                  weight_layout: WeightLayout | str | None = None) -> SharQLinear:
    """Quantizes ``layer``'s weight (out, in) once with ``method``."""
    qw = methods.quantize_weight(layer.weight[...], method, name=name)
    bias = None if layer.bias is None else layer.bias[...]
    return cls(qw, bias, name=name, backend=backend, interpret=interpret,
               weight_layout=weight_layout)

  @property
  def method(self) -> methods.Method:
    """The quantization method of this layer."""
    return self.qweight.get_value().method

  def weight_nbytes(self) -> float:
    """Stored bytes of the weight (packed payload, plus the kernels' copy if kept)."""
    extra = 0 if self.packed is None else self.packed.get_value().nbytes()
    return self.qweight.get_value().nbytes() + extra

  def __call__(self, x: jax.Array) -> jax.Array:
    bias = None if self.bias is None else self.bias[...]
    if self.packed is not None:
      from sharq_jax.kernels import dispatch  # pylint: disable=g-import-not-at-top
      packed = self.packed.get_value()
      if dispatch.supports(x, packed, interpret=self.interpret):
        return dispatch.sharq_dot_pallas(x, packed, bias=bias, interpret=self.interpret)
    # No kernel copy, or this x is one the kernels refuse: sharq_dot falls back (AUTO)
    # or raises with the reason (PALLAS).
    return linear.sharq_dot(x, self.qweight.get_value(), bias=bias,
                            backend=self.backend, name=self.name)
