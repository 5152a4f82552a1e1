"""One SwiGLU MLP block (gate/up column-parallel, down row-parallel) under shard_map.

Y = down(silu(gate(X)) · up(X)) with every linear a sharq-nvfp4 layer on the Pallas
kernels (prep + GEMM; gate and up share one prepared input), or plain bf16 `jnp.dot`
as the baseline. Three ways of laying out the tokens over the model axis:

  Layout.TP          X replicated; the down projection's partial sums are all-reduced.
  Layout.SP_BF16     X split by tokens (sequence parallel); all-gather X in bf16 before
                     gate/up, reduce-scatter Y back to token shards.
  Layout.SP_PACKED   as SP_BF16, but X travels as its packed SharQ-NVFP4 decomposition
                     (sharq_jax.parallel.all_gather_packed: ≈0.91 byte/value, not 2).

Row-parallel exactness: each device holds a K-slice of the down projection's input, so
its tensor scale is the pmax of the shards' amax (one scalar collective), and each
shard is quantized exactly as the whole tensor would be on one device. The partial
products are reduced in float32.

`comm=False` replaces every collective by a local stand-in of the same shape (tile the
local shard, keep the partial sum), so the time without communication can be measured
with the same kernels; it computes a wrong answer on purpose and is only for timing.
"""

from __future__ import annotations

import dataclasses
import enum
import functools

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from sharq_jax import parallel
from sharq_jax.kernels.sharq_matmul import pack_weight, sharq_gemm
from sharq_jax.kernels.sharq_prep import (PathMode, Prepared, finite_amax,
                                          scale_from_amax, sharq_prep)

METHOD = "sharq-nvfp4"
AXIS = "model"


class Layout(enum.Enum):
  """How tokens are laid out over the model axis (see module docstring)."""

  TP = "tp"
  SP_BF16 = "sp-bf16"
  SP_PACKED = "sp-packed"

  @property
  def sequence_parallel(self) -> bool:
    return self is not Layout.TP


class Linear(enum.Enum):
  """What each linear layer of the block is."""

  SHARQ = "sharq-nvfp4"  # Pallas prep + GEMM on packed FP4 weights
  BF16 = "bf16"  # XLA jnp.dot on bf16 weights


@dataclasses.dataclass(frozen=True)
class BlockConfig:
  """Static configuration of one MLP block call."""

  linear: Linear = Linear.SHARQ
  layout: Layout = Layout.TP
  comm: bool = True
  mode: PathMode = PathMode.EXACT
  interpret: bool = False


# ------------------------------------------------------------------------------------
# Weights: each device's shard, stacked along a leading axis of size tp
# ------------------------------------------------------------------------------------

def _stack_local(tree):
  return jax.tree.map(lambda a: a[None], tree)


def _unstack_local(tree):
  return jax.tree.map(lambda a: a[0], tree)


def shard_packed_weight(w: jax.Array, mesh: Mesh, kind: parallel.LinearKind):
  """W (N, K) → each device's PackedWeight shard, stacked as a (tp, ...) pytree.

  Quantized by `parallel.shard_quantized_weight` (global s_w, bit-identical to one
  device), then packed on each device; leaf i lives on model-axis device i.
  """
  qw = parallel.shard_quantized_weight(w, METHOD, mesh, kind, axes=parallel.MeshAxes(None, AXIS))
  specs = parallel.linear_weight_specs(qw, kind, AXIS)

  def pack_local(q):
    # A row-parallel shard holds K/tp columns; its static logical K says K.
    k_local = q.data.codes.shape[-1]
    q = dataclasses.replace(q, data=dataclasses.replace(q.data, logical_k=k_local),
                            logical_k=k_local)
    return _stack_local(pack_weight(q))

  pack = jax.shard_map(pack_local, mesh=mesh, in_specs=(specs,),
                       out_specs=P(AXIS), check_vma=False)
  return jax.jit(pack)(qw)


def shard_bf16_weight(w: jax.Array, mesh: Mesh, kind: parallel.LinearKind) -> jax.Array:
  """W (N, K) in bf16, split like the SharQ weights (column: N, row: K)."""
  spec = P(AXIS, None) if kind is parallel.LinearKind.COLUMN else P(None, AXIS)
  return jax.device_put(w.astype(jnp.bfloat16), NamedSharding(mesh, spec))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class MLPWeights:
  """gate, up (F, H) column-parallel; down (H, F) row-parallel."""

  gate: object
  up: object
  down: object


def shard_mlp_weights(gate, up, down, mesh: Mesh, linear: Linear) -> MLPWeights:
  """Places float weights (F,H), (F,H), (H,F) on `mesh` in `linear`'s storage."""
  col, row = parallel.LinearKind.COLUMN, parallel.LinearKind.ROW
  place = shard_packed_weight if linear is Linear.SHARQ else shard_bf16_weight
  return MLPWeights(place(gate, mesh, col), place(up, mesh, col), place(down, mesh, row))


def weight_specs(weights: MLPWeights, linear: Linear):
  """shard_map in_specs for MLPWeights."""
  if linear is Linear.SHARQ:
    stacked = jax.tree.map(lambda _: P(AXIS), weights.gate)
    return MLPWeights(stacked, stacked, jax.tree.map(lambda _: P(AXIS), weights.down))
  return MLPWeights(P(AXIS, None), P(AXIS, None), P(None, AXIS))


def weight_bytes_per_device(weights: MLPWeights, tp: int) -> int:
  """Bytes of weights one device streams per call."""
  leaves = jax.tree.leaves((weights.gate, weights.up, weights.down))
  return sum(int(a.size * a.dtype.itemsize) for a in leaves) // tp


# ------------------------------------------------------------------------------------
# The block, per device
# ------------------------------------------------------------------------------------

def _gather_tokens(x, cfg: BlockConfig, tp: int):
  if cfg.comm:
    return jax.lax.all_gather(x, AXIS, axis=0, tiled=True)
  return jnp.tile(x, (tp, 1))


def _prepared_gathered(x_local, cfg: BlockConfig, tp: int) -> Prepared:
  """SP_PACKED: gather the packed decomposition, hand its two paths to the GEMM."""
  if cfg.comm:
    (backbone, residual), s = parallel.all_gather_packed(x_local, METHOD, AXIS)
  else:
    p = parallel.pack_activation(x_local, METHOD)
    p = jax.tree.map(lambda a: jnp.tile(a, (tp,) + (1,) * (a.ndim - 1)) if a.ndim else a, p)
    (backbone, residual), s = parallel.unpack_activation(p)
  # Ŝ and R̂ are E2M1 × E4M3 products: exact in float16 (kernels/NOTES.md).
  if cfg.mode is PathMode.FAST:
    paths = ((backbone + residual).astype(jnp.float16),)
  else:
    paths = (backbone.astype(jnp.float16), residual.astype(jnp.float16))
  return Prepared(paths=paths, scale=s, rstd=None, mode=cfg.mode)


def _sharq_block(x_local, w: MLPWeights, cfg: BlockConfig, tp: int):
  gate, up, down = (_unstack_local(v) for v in (w.gate, w.up, w.down))
  gemm = functools.partial(sharq_gemm, interpret=cfg.interpret)
  if cfg.layout is Layout.SP_PACKED:
    prepared = _prepared_gathered(x_local, cfg, tp)
  else:
    x = _gather_tokens(x_local, cfg, tp) if cfg.layout.sequence_parallel else x_local
    prepared = sharq_prep(x, mode=cfg.mode, interpret=cfg.interpret)
  g = gemm(prepared, gate, out_dtype=jnp.bfloat16)
  u = gemm(prepared, up, out_dtype=jnp.bfloat16)
  h = jax.nn.silu(g) * u  # (M, F/tp): a K-slice of the down projection's input
  amax = finite_amax(h)
  if cfg.comm:
    amax = jax.lax.pmax(amax, AXIS)
  h_prep = sharq_prep(h, mode=cfg.mode, scale=scale_from_amax(amax), interpret=cfg.interpret)
  return gemm(h_prep, down, out_dtype=jnp.float32)  # partial sums over F


def _bf16_block(x_local, w: MLPWeights, cfg: BlockConfig, tp: int):
  x = _gather_tokens(x_local, cfg, tp) if cfg.layout.sequence_parallel else x_local
  g = jnp.dot(x, w.gate.T, preferred_element_type=jnp.float32).astype(jnp.bfloat16)
  u = jnp.dot(x, w.up.T, preferred_element_type=jnp.float32).astype(jnp.bfloat16)
  h = jax.nn.silu(g) * u
  return jnp.dot(h, w.down.T, preferred_element_type=jnp.float32)


def _reduce(y_partial, cfg: BlockConfig, tp: int):
  if cfg.layout.sequence_parallel:
    if cfg.comm:
      return jax.lax.psum_scatter(y_partial, AXIS, scatter_dimension=0, tiled=True)
    return y_partial[: y_partial.shape[0] // tp]
  return jax.lax.psum(y_partial, AXIS) if cfg.comm else y_partial


def mlp_block(x: jax.Array, weights: MLPWeights, mesh: Mesh, cfg: BlockConfig) -> jax.Array:
  """The MLP block on `mesh` (one "model" axis): x (M, H) bf16 → y (M, H) bfloat16.

  x is replicated (Layout.TP) or split by tokens (sequence-parallel layouts, M a
  multiple of tp); y comes back laid out like x.
  """
  tp = mesh.shape[AXIS]
  if cfg.layout.sequence_parallel and x.shape[0] % tp:
    raise ValueError(f"sequence parallelism over {tp} devices needs M={x.shape[0]} "
                     f"divisible by {tp}")
  block = _sharq_block if cfg.linear is Linear.SHARQ else _bf16_block
  x_spec = P(AXIS, None) if cfg.layout.sequence_parallel else P()

  def local(x_local, w):
    return _reduce(block(x_local, w, cfg, tp), cfg, tp).astype(jnp.bfloat16)

  return jax.shard_map(local, mesh=mesh, in_specs=(x_spec, weight_specs(weights, cfg.linear)),
                       out_specs=x_spec, check_vma=False)(x, weights)


# ------------------------------------------------------------------------------------
# Bytes on the wire
# ------------------------------------------------------------------------------------

def collective_bytes(m: int, hidden: int, tp: int, cfg: BlockConfig) -> dict[str, int]:
  """Bytes each device sends per call (ring algorithms: (tp−1)/tp of the buffer per
  all-gather or reduce-scatter, twice that for an all-reduce).

  Returns dict(gather=..., reduce=..., scalars=...): the input all-gather, the output
  reduction (float32 partial sums) and the scalar pmax of the down projection's amax
  (plus the gathered input's amax with SP_PACKED).
  """
  frac = (tp - 1) / tp
  out_f32 = m * hidden * 4
  gather = 0.0
  if cfg.layout is Layout.SP_BF16:
    gather = frac * m * hidden * 2
  elif cfg.layout is Layout.SP_PACKED:
    gather = frac * parallel.gather_bytes((m, hidden), METHOD)["packed"]
  reduce = frac * out_f32 * (1 if cfg.layout.sequence_parallel else 2)
  scalars = 0
  if cfg.linear is Linear.SHARQ:
    scalars = 4 * (tp > 1) * (2 if cfg.layout is Layout.SP_PACKED else 1)
  return dict(gather=int(gather), reduce=int(reduce), scalars=int(scalars))
