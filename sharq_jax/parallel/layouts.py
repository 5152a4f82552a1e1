"""Tensor- and data-parallel layouts of SharQ linear layers on a user's Mesh.

Column-parallel (q, k, v, gate, up): W (N, K) is split along N; every device holds
whole rows, so blocks and N:M groups along K are never cut. Row-parallel (o, down):
W and the incoming activation are split along K, so each device's share of K must be
a whole number of weight blocks, activation blocks and mask groups — otherwise a block
would straddle two devices and its scale could not be computed locally.

Exactness: the activation tensor scale is the amax over the whole tensor. Under `jit`
with these shardings XLA reduces the amax across shards (max is exact in any order),
so codes and scales equal the single-device ones bit for bit; only float32 sums
(the dot products) differ by accumulation order.
"""

from __future__ import annotations

import dataclasses
import enum
import math

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from sharq_jax import methods as sq_methods


class LinearKind(enum.Enum):
  """How a linear layer's weight (N, K) is laid out over the model axis."""

  COLUMN = "column"  # split N: outputs sharded, no communication inside the layer
  ROW = "row"  # split K: partial products summed across the model axis
  REPLICATED = "replicated"


@dataclasses.dataclass(frozen=True)
class MeshAxes:
  """Names of the mesh axes used for data and tensor (model) parallelism.

  None disables that kind of parallelism.
  """

  data: str | None = "data"
  model: str | None = "model"

  def size(self, mesh: Mesh, axis: str | None) -> int:
    """Devices along `axis` of `mesh` (1 when None)."""
    return 1 if axis is None else mesh.shape[axis]


def _weight_spec(kind: LinearKind, model_axis: str | None) -> P:
  return {LinearKind.COLUMN: P(model_axis, None), LinearKind.ROW: P(None, model_axis),
          LinearKind.REPLICATED: P(None, None)}[kind]


def validate_linear_layout(shape: tuple[int, int], method: "str | sq_methods.Method",
                           kind: LinearKind, tp: int, *, name: str = "linear") -> None:
  """Raises a ValueError explaining why a layout would cut blocks or groups.

  Args:
    shape: (N, K) of the weight.
    method: the layer's method (its block sizes and mask group matter).
    kind: column- or row-parallel.
    tp: devices along the model axis.
    name: the layer, for the message.
  """
  method = sq_methods.get_method(method)
  n, k = shape
  if kind is LinearKind.COLUMN and n % tp:
    raise ValueError(f"{name}: column-parallel over {tp} devices needs N={n} divisible "
                     f"by {tp}")
  if kind is LinearKind.ROW:
    multiple = math.lcm(method.activation.k_multiple, method.weight.k_multiple)
    if k % tp or (k // tp) % multiple:
      raise ValueError(
          f"{name}: row-parallel over {tp} devices splits K={k} into "
          f"{k / tp:g} per device, which is not a multiple of {multiple} (the blocks "
          f"and N:M groups of {method.name!r}); a block would straddle two devices. Use "
          f"a model-axis size dividing K/{multiple}={k // multiple}, or column-parallel.")


def linear_weight_specs(qw: sq_methods.QuantizedWeight, kind: LinearKind,
                        model_axis: str | None):
  """PartitionSpec pytree for a QuantizedWeight: (N, K)-shaped codes and scales split
  like W; scalars (the tensor scale) replicated."""
  spec = _weight_spec(kind, model_axis)
  return jax.tree.map(lambda leaf: spec if leaf.ndim == 2 else P(), qw)


def shard_quantized_weight(w: jax.Array, method: "str | sq_methods.Method", mesh: Mesh,
                           kind: LinearKind, *, axes: MeshAxes = MeshAxes(),
                           name: str = "linear") -> sq_methods.QuantizedWeight:
  """Quantizes W directly into its sharded layout (each device quantizes its shard).

  `w` may itself be sharded (e.g. loaded shard by shard); the tensor scale s_w is the
  global amax, reduced across devices by XLA, so the result equals quantizing the
  whole W on one device.
  """
  method = sq_methods.get_method(method)
  validate_linear_layout(w.shape, method, kind, axes.size(mesh, axes.model), name=name)
  spec = _weight_spec(kind, axes.model)
  abstract = jax.eval_shape(lambda v: sq_methods.quantize_weight(v, method, name=name),
                            jax.ShapeDtypeStruct(w.shape, w.dtype))
  out_specs = linear_weight_specs(abstract, kind, axes.model)
  out_shardings = jax.tree.map(lambda s: NamedSharding(mesh, s), out_specs)
  quantize = jax.jit(lambda v: sq_methods.quantize_weight(v, method, name=name),
                     in_shardings=NamedSharding(mesh, spec), out_shardings=out_shardings)
  return quantize(w)
