"""The methods registry of DESIGN.md §2.6: activation + weight quantizer by name."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from sharq_jax import errors
from sharq_jax import quantizers as qz
from sharq_jax.decompose import ResidualSource, SharQConfig
from sharq_jax.formats import HiF4, MXFP4, NVFP4
from sharq_jax.masks import NMPattern


@dataclasses.dataclass(frozen=True)
class Method:
  """A quantization method: how activations and weights of a linear layer are stored.

  Attributes:
    name: registry name.
    activation: the activation quantizer.
    weight: the weight quantizer.
    baseline: the single-path method its gap recovery is measured against (or None).
  """

  name: str
  activation: qz.ActivationQuantizer
  weight: qz.WeightQuantizer
  baseline: str | None = None


PAIRS_4_8 = NMPattern(4, 8, unit=2)
SCALAR_2_4 = NMPattern(2, 4)


def _sharq_nvfp4(residual_source=ResidualSource.QUANTIZED_BACKBONE) -> SharQConfig:
  return SharQConfig(pattern=PAIRS_4_8, backbone=NVFP4(32), residual=NVFP4(16),
                     tensor_scale=True, residual_source=residual_source)


_SHARQ_NVFP4_WEIGHT = qz.DenseWeight(NVFP4(32))


def _build_registry() -> dict[str, Method]:
  sharq_nvfp4 = _sharq_nvfp4()
  methods = [
      Method("bf16", qz.Unquantized(), qz.UnquantizedWeight()),
      Method("nvfp4", qz.Dense(NVFP4(16)), qz.DenseWeight(NVFP4(16))),
      Method("mxfp4", qz.Dense(MXFP4()), qz.DenseWeight(MXFP4())),
      Method("hif4", qz.Dense(HiF4()), qz.DenseWeight(HiF4())),
      Method("sharq-nvfp4", qz.SharQ(sharq_nvfp4), _SHARQ_NVFP4_WEIGHT, "nvfp4"),
      Method("sharq-mxfp4",
             qz.SharQ(SharQConfig(pattern=PAIRS_4_8, backbone=MXFP4(64),
                                  residual=MXFP4(32), tensor_scale=False)),
             qz.DenseWeight(MXFP4()), "mxfp4"),
      Method("sharq-hif4",
             qz.SharQ(SharQConfig(pattern=SCALAR_2_4, backbone=HiF4(), residual=HiF4(),
                                  tensor_scale=False)),
             qz.DenseWeight(HiF4()), "hif4"),
      Method("sparse-only-nvfp4", qz.SharQ(sharq_nvfp4, sparse_only=True),
             _SHARQ_NVFP4_WEIGHT, "nvfp4"),
      Method("dense-dense-nvfp4", qz.DenseDense(NVFP4(16)), _SHARQ_NVFP4_WEIGHT, "nvfp4"),
      Method("sparse-sparse-nvfp4", qz.SparseSparse(PAIRS_4_8, NVFP4(32)),
             _SHARQ_NVFP4_WEIGHT, "nvfp4"),
      Method("sharq-nvfp4-raw-residual",
             qz.SharQ(_sharq_nvfp4(ResidualSource.RAW_BACKBONE)), _SHARQ_NVFP4_WEIGHT,
             "nvfp4"),
      Method("prune-nvfp4", qz.Prune(PAIRS_4_8, NVFP4(16)), qz.DenseWeight(NVFP4(16)),
             "nvfp4"),
  ]
  return {m.name: m for m in methods}


METHODS: dict[str, Method] = _build_registry()


def get_method(method: "str | Method") -> Method:
  """Looks a method up by name (a Method passes through).

  Raises:
    ValueError: unknown name; the message lists the valid ones.
  """
  if isinstance(method, Method):
    return method
  try:
    return METHODS[method]
  except KeyError:
    raise ValueError(f"unknown method {method!r}; valid methods: {sorted(METHODS)}") from None


def register(method: Method) -> Method:
  """Adds a user-defined method to the registry (names must be new)."""
  if method.name in METHODS:
    raise ValueError(f"method {method.name!r} is already registered")
  METHODS[method.name] = method
  return method


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class QuantizedWeight:
  """A weight (N, K) stored once by its method's weight quantizer.

  Invariant: `unscaled() · scale() ≈ W`, and `unscaled()` is what each activation path
  multiplies (the shared payload of both SharQ paths).
  """

  data: object
  method: Method = dataclasses.field(metadata=dict(static=True))
  logical_k: int = dataclasses.field(metadata=dict(static=True))

  @property
  def shape(self) -> tuple[int, int]:
    """(N, K) of the original weight."""
    return (jnp.shape(self.unscaled())[0], self.logical_k)

  def unscaled(self) -> jax.Array:
    """Ŵ' (N, K) float32, without the tensor scale."""
    return self.method.weight.unscaled(self.data)[..., :self.logical_k]

  def scale(self) -> jax.Array:
    """The weight tensor scale s_w (float32)."""
    return self.method.weight.scale(self.data)

  def nbytes(self) -> float:
    """Bytes of the stored weight (packed codes + scales for quantized methods)."""
    return self.method.weight.nbytes(self.data)

  def dequantize(self) -> jax.Array:
    """Ŵ = Ŵ' · s_w, float32 (N, K)."""
    return self.unscaled() * self.scale()


def quantize_weight(w: jax.Array, method: "str | Method", *, name: str = "weight",
                    pad: bool = False) -> QuantizedWeight:
  """Quantizes a linear weight W (N = out_features, K = in_features) once.

  Raises:
    ValueError: K is not a multiple of the weight block (unless pad=True).
  """
  method = get_method(method)
  w = jnp.asarray(w)
  if w.ndim != 2:
    raise ValueError(f"{name}: expected a weight of shape (N, K), got {w.shape}")
  data = method.weight.quantize(w, name=name, pad=pad)
  return QuantizedWeight(data=data, method=method, logical_k=w.shape[-1])


def fake_quant_weight(w: jax.Array, method: "str | Method", **kwargs) -> jax.Array:
  """Ŵ (float32): W quantized and dequantized by `method`."""
  return quantize_weight(w, method, **kwargs).dequantize()


def fake_quant_activation(x: jax.Array, method: "str | Method", **kwargs) -> jax.Array:
  """X̂ (float32): activations quantized and dequantized by `method`."""
  method = get_method(method)
  errors.check_finite(jnp.asarray(x), method.activation.bad_input,
                      kwargs.get("name", "activation"))
  return _fake_quant_activation(x, method, **kwargs)


@functools.partial(jax.jit, static_argnames=("method", "name", "pad"))
def _fake_quant_activation(x, method: Method, *, name: str = "activation", pad: bool = False):
  return method.activation.fake_quant(x, name=name, pad=pad)
