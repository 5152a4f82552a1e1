"""Sharding a whole Flax NNX model: tensor-parallel linears, replicated rest.

Rules map a linear layer's dotted path (e.g. `layers.3.self_attn.q_proj`) to a
LinearKind; the first matching rule wins. The default is Megatron-style: q/k/v and
gate/up column-parallel (heads and FFN columns split), o and down row-parallel.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Sequence

import jax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from sharq_jax.nn.linear import Linear
from sharq_jax.nn.sharq_linear import SharQLinear
from sharq_jax.parallel.layouts import LinearKind, MeshAxes, validate_linear_layout

_LEAF_ROLES = ("weight", "qweight", "bias")


@dataclasses.dataclass(frozen=True)
class ShardingRule:
  """Linears whose dotted path matches the fnmatch `pattern` get layout `kind`."""

  pattern: str
  kind: LinearKind


MEGATRON_RULES: tuple[ShardingRule, ...] = (
    ShardingRule("*.q_proj", LinearKind.COLUMN), ShardingRule("*.k_proj", LinearKind.COLUMN),
    ShardingRule("*.v_proj", LinearKind.COLUMN), ShardingRule("*.gate_proj", LinearKind.COLUMN),
    ShardingRule("*.up_proj", LinearKind.COLUMN), ShardingRule("*.o_proj", LinearKind.ROW),
    ShardingRule("*.down_proj", LinearKind.ROW),
)


def _key_name(entry) -> str:
  for attr in ("key", "idx", "name"):
    if hasattr(entry, attr):
      return str(getattr(entry, attr))
  return str(entry)


def _kind_of(module_path: str, rules: Sequence[ShardingRule]) -> LinearKind:
  for rule in rules:
    if fnmatch.fnmatchcase(module_path, rule.pattern):
      return rule.kind
  return LinearKind.REPLICATED


def _linear_layers(model: nnx.Module):
  """(dotted path, (N, K), method name) of every Linear / SharQLinear in the model."""
  for path, module in nnx.iter_modules(model):
    dotted = ".".join(str(p) for p in path)
    if isinstance(module, SharQLinear):
      qw = module.qweight.get_value()
      yield dotted, qw.shape, qw.method
    elif isinstance(module, Linear):
      yield dotted, tuple(module.weight.shape), "bf16"


def validate_model_layout(model: nnx.Module, tp: int,
                          rules: Sequence[ShardingRule] = MEGATRON_RULES) -> None:
  """Raises a ValueError naming what a tensor-parallel size `tp` would cut badly:
  attention heads (each device must hold whole query and KV heads), or a linear's
  blocks / N:M groups."""
  cfg = getattr(model, "config", None)
  for attr in ("num_heads", "num_kv_heads"):
    heads = getattr(cfg, attr, None)
    if heads is not None and heads % tp:
      raise ValueError(f"tensor parallelism over {tp} devices would split the model's "
                       f"{heads} {attr.replace('num_', '').replace('_', ' ')} unevenly; "
                       f"choose a model-axis size that divides {heads}")
  for dotted, shape, method in _linear_layers(model):
    kind = _kind_of(dotted, rules)
    if kind is not LinearKind.REPLICATED:
      validate_linear_layout(shape, method, kind, tp, name=dotted)


def _leaf_spec(path, leaf, axes: MeshAxes, rules: Sequence[ShardingRule]) -> P:
  names = [_key_name(e) for e in path]
  role_at = next((i for i, n in enumerate(names) if n in _LEAF_ROLES), None)
  if role_at is None or getattr(leaf, "ndim", 0) == 0:
    return P()
  kind = _kind_of(".".join(names[:role_at]), rules)
  if names[role_at] == "bias":  # biases follow the output (N) axis
    return P(axes.model) if kind is LinearKind.COLUMN else P()
  if leaf.ndim != 2 or kind is LinearKind.REPLICATED:
    return P()
  return P(axes.model, None) if kind is LinearKind.COLUMN else P(None, axes.model)


def model_partition_specs(model: nnx.Module, *, axes: MeshAxes = MeshAxes(),
                          rules: Sequence[ShardingRule] = MEGATRON_RULES):
  """PartitionSpec for every leaf of `nnx.state(model)` (same tree structure)."""
  state = nnx.state(model)
  return jax.tree_util.tree_map_with_path(lambda p, v: _leaf_spec(p, v, axes, rules), state)


def shard_model(model: nnx.Module, mesh: Mesh, *, axes: MeshAxes = MeshAxes(),
                rules: Sequence[ShardingRule] = MEGATRON_RULES) -> nnx.Module:
  """Places the model's arrays on `mesh` by the rules (validated first) and returns it.

  Works for plain and converted (SharQLinear) models: packed codes and block scales
  are split like the weight they encode; tensor scales are replicated.
  """
  validate_model_layout(model, axes.size(mesh, axes.model), rules)
  graphdef, state = nnx.split(model)
  specs = model_partition_specs(model, axes=axes, rules=rules)
  shardings = jax.tree.map(lambda s: NamedSharding(mesh, s), specs,
                           is_leaf=lambda x: isinstance(x, P))
  return nnx.merge(graphdef, jax.device_put(state, shardings))


def quantize_sharded(model: nnx.Module, mesh: Mesh, *, method, axes: MeshAxes = MeshAxes(),
                     rules: Sequence[ShardingRule] = MEGATRON_RULES, conversion_rules=()):
  """Shards a bf16 model, then converts it in place so each device quantizes its own
  shard (XLA keeps the weight layout; no device ever holds a whole quantized weight).

  Returns (sharded converted model, ConversionReport).
  """
  from sharq_jax.nn import convert  # pylint: disable=g-import-not-at-top
  validate_model_layout(model, axes.size(mesh, axes.model), rules)
  sharded = shard_model(model, mesh, axes=axes, rules=rules)
  report = convert.quantize_model(sharded, method=method, rules=conversion_rules)
  return shard_model(sharded, mesh, axes=axes, rules=rules), report


def data_sharding(mesh: Mesh, axes: MeshAxes = MeshAxes()) -> NamedSharding:
  """Sharding of a (batch, seq) token array: batch split over the data axis."""
  return NamedSharding(mesh, P(axes.data, None))
