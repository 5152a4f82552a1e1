"""Moving activations between devices in their packed FP4 form instead of bf16.

With sequence parallelism the tokens of an activation are split over the model axis
and gathered before each column-parallel layer. Quantizing first and gathering the
packed payload moves ≈0.56 byte/value (NVFP4) or ≈0.91 (SharQ-NVFP4, compressed
backbone + residual) instead of 2 (bf16). Only the tensor scale needs a collective
before quantizing (a scalar max), so the gathered result equals quantizing the whole
gathered tensor on one device, bit for bit.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from sharq_jax import decompose as dec
from sharq_jax import formats as F
from sharq_jax import methods as sq_methods
from sharq_jax import quantizers as qz
from sharq_jax.masks import Compressed, expand
from sharq_jax.qtensor import QTensor


def _nibbles(q: QTensor) -> jax.Array:
  codes = q.codes
  return F.e2m1_to_nibbles(codes) if codes.dtype == jnp.float4_e2m1fn else codes


def _codes_from_nibbles(nibbles: jax.Array, fmt) -> jax.Array:
  return nibbles if isinstance(fmt, F.HiF4) else F.nibbles_to_e2m1(nibbles)


def _pack_positions(positions: jax.Array) -> jax.Array:
  """2-bit positions (..., G, u) → uint8, four per byte (first in the low bits)."""
  flat = positions.reshape(*positions.shape[:-2], -1, 4).astype(jnp.uint8)
  return flat[..., 0] | (flat[..., 1] << 2) | (flat[..., 2] << 4) | (flat[..., 3] << 6)


def _unpack_positions(packed: jax.Array, kept_units: int) -> jax.Array:
  shifts = jnp.array([0, 2, 4, 6], jnp.uint8)
  flat = (packed[..., None] >> shifts) & 3
  return flat.reshape(*packed.shape[:-1], -1, kept_units)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class PackedActivation:
  """An activation tensor as it travels: packed 4-bit codes, scales, positions.

  `codes`/`scales` hold the dense path (the residual for SharQ, the only path for a
  dense method); `sparse_*` hold the compressed backbone (None for dense methods).
  """

  tensor_scale: jax.Array
  codes: jax.Array
  scales: jax.Array
  sparse_codes: jax.Array | None
  sparse_positions: jax.Array | None
  sparse_scales: jax.Array | None
  method: sq_methods.Method = dataclasses.field(metadata=dict(static=True))
  k: int = dataclasses.field(metadata=dict(static=True))

  def nbytes(self) -> int:
    """Bytes that travel (the tensor scale excluded: it is reduced, not gathered)."""
    leaves = [self.codes, self.scales, self.sparse_codes, self.sparse_positions,
              self.sparse_scales]
    return sum(int(a.size * a.dtype.itemsize) for a in leaves if a is not None)


def _supported_config(method: sq_methods.Method):
  act = method.activation
  if isinstance(act, qz.SharQ) and not act.sparse_only and act.config.pattern.position_bits == 2:
    return act.config
  if isinstance(act, qz.Dense):
    return None
  raise ValueError(f"packed transfer supports dense and SharQ methods with 2-bit "
                   f"positions, not {method.name!r}")


def pack_activation(x: jax.Array, method: "str | sq_methods.Method", *,
                    tensor_scale: jax.Array | None = None) -> PackedActivation:
  """Quantizes x (..., K) with `method`'s activation quantizer into the travelling form.

  `tensor_scale`: the whole tensor's scale when x is a shard (see all_gather_packed).
  """
  method = sq_methods.get_method(method)
  config = _supported_config(method)
  k = x.shape[-1]
  if config is None:
    q = F.quantize(x, method.activation.fmt, tensor_scale=tensor_scale)
    return PackedActivation(q.tensor_scale, F.pack_nibbles(_nibbles(q)), q.scales, None,
                            None, None, method, k)
  d = dec.decompose(x, config, tensor_scale=tensor_scale)
  c = d.compressed_backbone()
  sparse_nibbles = _nibbles(dataclasses.replace(d.backbone, codes=c.values))
  return PackedActivation(d.tensor_scale, F.pack_nibbles(_nibbles(d.residual)),
                          d.residual.scales, F.pack_nibbles(sparse_nibbles),
                          _pack_positions(c.positions), d.backbone.scales, method, k)


def unpack_activation(p: PackedActivation) -> tuple[tuple[jax.Array, ...], jax.Array]:
  """(paths, s) of a PackedActivation, as `method.activation.paths` would give them."""
  config = _supported_config(p.method)
  if config is None:
    fmt = p.method.activation.fmt
    q = QTensor(_codes_from_nibbles(F.unpack_nibbles(p.codes), fmt), p.scales,
                p.tensor_scale, fmt, p.k)
    return (q.dequantize(apply_tensor_scale=False),), p.tensor_scale
  one = jnp.ones((), jnp.float32)
  positions = _unpack_positions(p.sparse_positions, config.pattern.kept_units)
  kept = _codes_from_nibbles(F.unpack_nibbles(p.sparse_codes), config.backbone)
  dense_codes = expand(Compressed(kept.astype(jnp.float32), positions, config.pattern))
  backbone = QTensor(dense_codes.astype(kept.dtype), p.sparse_scales, one,
                     config.backbone, p.k)
  residual = QTensor(_codes_from_nibbles(F.unpack_nibbles(p.codes), config.residual),
                     p.scales, one, config.residual, p.k)
  return (backbone.dequantize(), residual.dequantize()), p.tensor_scale


def _needs_global_scale(method: sq_methods.Method) -> bool:
  act = method.activation
  if isinstance(act, qz.SharQ):
    return act.config.tensor_scale
  fmt = act.fmt
  return fmt.has_tensor_scale and fmt.scale_granularity is F.ScaleGranularity.PER_TENSOR


def all_gather_packed(x_local: jax.Array, method: "str | sq_methods.Method",
                      axis_name: str, *, axis: int = 0):
  """Inside shard_map: gathers x's shards along `axis` in packed FP4 form.

  The tensor scale is reduced first (a scalar pmax), then each device quantizes its
  shard, the packed payloads are all-gathered, and the result is unpacked.

  Returns:
    (paths, s) equal, bit for bit, to `method.activation.paths(gathered x)`.
  """
  method = sq_methods.get_method(method)
  scale = None
  if _needs_global_scale(method):
    amax = jax.lax.pmax(F.finite_amax(x_local), axis_name)
    scale = F.scale_from_amax(amax)
  packed = pack_activation(x_local, method, tensor_scale=scale)
  gathered = jax.tree.map(
      lambda a: jax.lax.all_gather(a, axis_name, axis=axis, tiled=True) if a.ndim else a,
      packed)
  return unpack_activation(gathered)


def gather_bytes(shape: tuple[int, ...], method: "str | sq_methods.Method") -> dict[str, int]:
  """Bytes an all-gather of an activation of `shape` moves in bf16 vs packed form."""
  packed = jax.eval_shape(lambda v: pack_activation(v, method),
                          jax.ShapeDtypeStruct(shape, jnp.float32))
  total = 1
  for d in shape:
    total *= d
  return dict(bf16=2 * total, packed=packed.nbytes())


def sequence_parallel_traffic(hidden_size: int, num_layers: int, tokens: int,
                              method: "str | sq_methods.Method") -> list[dict]:
  """Per-layer all-gather bytes of a sequence-parallel decoder, bf16 vs packed FP4.

  Each block gathers its normed input twice (before q/k/v and before gate/up, hidden
  wide) and the attention output before o_proj is already split by heads, as is the
  FFN activation before down_proj (no gather). Returns one row per gathered input.
  """
  rows = []
  for layer in range(num_layers):
    for consumer in ("q/k/v", "gate/up"):
      moved = gather_bytes((tokens, hidden_size), method)
      rows.append(dict(layer=layer, consumer=consumer, bf16_bytes=moved["bf16"],
                       packed_bytes=moved["packed"]))
  return rows
