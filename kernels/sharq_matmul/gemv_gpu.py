"""SharQ GEMV kernel (Pallas, Triton lowering): a few tokens, FP4 weights, no tensor cores.

At M <= GEMV_MAX_M the tensor-core kernel wastes most of each MMA tile and pays for
moving every decoded weight into the MMA operand layout through shared memory
(kernels/NOTES.md, v2 profiled). Here each thread decodes the 16 bytes (one 32-block) it
loaded — Ŵ'·2^-7 in float16 by bit moves, exactly as the packed GEMM does — widens them
to float32 and multiplies them with every token of every activation path by FMAs into
per-thread float32 sums. No weight value crosses threads.

The activations reach the threads in the weights' own register layout, so no step
converts layouts (v3 converted each token's activations through shared memory every
step): they are read in PathLayout.GEMV — per 32-block the 16 even-K values, then the
16 odd-K values, matching the low and high nibbles of the block's 16 bytes — by loads
of the weight tile's shape whose row index has stride 0 (every weight row reads the
same activations; the warp's identical addresses are one L1 transaction).

Numerics: every product Ŵ'·2^-7 × path value is exact in float32 (≤ 6 × ≤ 11 significant
bits); only the float32 summation order differs from the reference.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from sharq_jax.kernels import _compat
from sharq_jax.kernels import common
from sharq_jax.kernels.sharq_matmul.config import GemvConfig
from sharq_jax.kernels.sharq_matmul.packing import PackedWeight, rows_weight
from sharq_jax.kernels.sharq_matmul.pallas_gpu import WEIGHT_FACTOR, finish_split_k
from sharq_jax.kernels.sharq_prep.reference import PathLayout, to_layout

# A 32-block's 16 bytes as two halves of 8: 8 bytes = one 64-bit load per thread for the
# codes and one 128-bit load per float16 activation plane, so the coalescing pass gives
# codes and activations the same register layout (same shape, same elements per thread).
_HALVES, _HALF = 2, 8


def _plane(x_ref, t: int, parity: int, kb0, nb: int, rows: int, gpu: bool):
  """Token t's parity plane of blocks kb0 .. kb0+nb as float32 (rows, nb, 2, 8)."""
  if gpu:  # stride-0 row index: the load itself has the weight tile's shape and layout
    v = x_ref[pl.ds(t, rows, stride=0), pl.ds(kb0, nb), parity, :, :]
  else:  # interpret mode: read once, broadcast
    v = jnp.broadcast_to(x_ref[t, pl.ds(kb0, nb), parity, :, :][None],
                         (rows, nb, _HALVES, _HALF))
  return v.astype(jnp.float32)


def _gemv_kernel(*refs, npaths: int, m: int, cfg: GemvConfig, n_iter: int, fused: bool,
                 has_bias: bool, gpu: bool):
  x_refs = refs[:npaths]  # (M, K/32, parity, half, 8) float16 (PathLayout.GEMV)
  w_ref, sc_ref = refs[npaths:npaths + 2]  # (bn, K/32, 2, 8) bytes, (bn, K/32, 1, 1) E4M3
  rest = refs[npaths + 2:]
  o_ref = rest[-1]
  bn, nb = cfg.block_n, cfg.block_k // 32
  # The tile's rows in row_groups equal groups: tensors of one shape get one register
  # layout, so a thread holds the same K positions of every group and converts each
  # activation to float32 once for all groups (once per row with one group).
  groups = cfg.row_groups
  rows = bn // groups
  it0 = pl.program_id(1) * n_iter

  def load_x(it):
    """Token t, path p's even and odd planes for every (t, p)."""
    kb0 = (it0 + it) * nb
    return tuple(tuple(_plane(x_ref, t, parity, kb0, nb, rows, gpu) for parity in (0, 1))
                 for t in range(m) for x_ref in x_refs)

  def load(it):
    kb0 = (it0 + it) * nb
    # Scale tiles of the code tiles' shape (rows, nb, 1, 1): with row groups the local
    # sm_90a compile broadcasts them without shared memory. Loading the scale bytes per
    # thread with stride-0 indices instead (one byte load per element) measured ~1.5x
    # slower (4096x14336, M = 1: 42.2 µs with the split-K sum vs 26.6 + 1.6 µs; two runs).
    codes = tuple(w_ref[pl.ds(g * rows, rows), pl.ds(kb0, nb), :, :] for g in range(groups))
    scale_bits = tuple(sc_ref[pl.ds(g * rows, rows), pl.ds(kb0, nb), :, :]
                       for g in range(groups))
    return codes, scale_bits

  def multiply(it, weight_step, *rest):
    codes, scale_bits = weight_step
    *queued_planes, accs = rest
    planes = queued_planes[0] if queued_planes else None
    weights = []
    for c, sb in zip(codes, scale_bits):
      scale = common.decode_e4m3_scale_f16(sb)
      lo, hi = common.decode_nibbles_f16(c, gpu=gpu)
      # Ŵ'·2^-7, exact in float16 and float32
      weights.append(((lo * scale).astype(jnp.float32), (hi * scale).astype(jnp.float32)))
    if planes is None:
      planes = load_x(it)
    out = list(accs)
    for i, (even, odd) in enumerate(planes):  # i = t·npaths + path
      t = i // len(x_refs)
      for g, (lo, hi) in enumerate(weights):
        out[t * groups + g] = out[t * groups + g] + lo * even + hi * odd
    return tuple(out)

  zeros = (jnp.zeros((rows, nb, _HALVES, _HALF), jnp.float32),) * (m * groups)
  streams = [(load, cfg.prefetch)]
  if cfg.prefetch_activations:
    streams.append((load_x, cfg.prefetch_activations))
  accs = common.stream_queues(n_iter, streams, multiply, zeros)
  if fused:  # factor = s·s_w·2^7 in the kernel: no XLA op between prep and GEMV
    factor = rest[0][...] * rest[1][...] * WEIGHT_FACTOR
  # One (1, rows) slice per token and group: Triton tensors must have power-of-two
  # sizes, M need not.
  for i, acc in enumerate(accs):
    t, g = divmod(i, groups)
    cols = pl.ds(g * rows, rows)
    y = jnp.sum(jnp.sum(jnp.sum(acc, axis=3), axis=2), axis=1)[None, :]
    if fused:
      y = y * factor
      if has_bias:
        y = y + rest[2][:, cols]
    o_ref[pl.ds(t, 1), cols] = y.astype(o_ref.dtype)


def gemv_operands(paths, w: PackedWeight, config, planes: bool,
                  layout: PathLayout = PathLayout.GEMV):
  """Shared GEMV prologue: paths in `layout` (XLA permutes column-order paths unless
  planes), the config checked against (M, N, K); returns (paths, M, K, N, K steps per
  split). (gemv and fragment_gemv read WeightLayout.ROWS: they convert a tiled weight
  first, with rows_weight.)"""
  if not planes:
    paths = [to_layout(p, layout) for p in paths]
  m, k = paths[0].shape
  config.check(m, w.n, k)
  return paths, m, k, w.n, k // (config.split_k * config.block_k)


def gemv(paths, w: PackedWeight, *, act_scale: jax.Array, bias=None,
         out_dtype=jnp.float32, config: GemvConfig, planes: bool = False,
         interpret: bool = False) -> jax.Array:
  """s·s_w·2^7 · Σ_p paths[p] · (Ŵ'·2^-7)ᵀ (+ bias) for M <= GEMV_MAX_M tokens.

  Args:
    paths: (M, K) activation paths (1 or 2) in PathLayout.MMA, or with planes=True in
      PathLayout.GEMV (sharq_prep(..., layout=PathLayout.GEMV)).
    w: the packed weight.
    act_scale: the activations' tensor scale s (float32 scalar, Prepared.scale).
    bias: optional (N,) float32.
    out_dtype: output dtype.
    config: tile config (checked against the shape).
    planes: whether the paths are in PathLayout.GEMV (else XLA permutes them).
    interpret: Pallas interpret mode (CPU tests).

  With split_k = 1 the factor s·s_w·2^7 and the bias are applied in the kernel (one
  launch); with split_k > 1 the float32 partials are summed, scaled and cast by XLA.
  A tiled weight (WeightLayout) is converted to rows first (one extra pass).
  """
  w = rows_weight(w)
  paths, m, k, n, n_iter = gemv_operands(paths, w, config, planes)
  kb, cfg = k // 32, config
  bn = cfg.block_n
  fused = cfg.split_k == 1
  act_scale = jnp.asarray(act_scale, jnp.float32)
  in_specs = [pl.BlockSpec((m, kb, 2, _HALVES, _HALF), lambda j, s: (0, 0, 0, 0, 0))
              ] * len(paths)
  in_specs += [pl.BlockSpec((bn, kb, _HALVES, _HALF), lambda j, s: (j, 0, 0, 0)),
               pl.BlockSpec((bn, kb, 1, 1), lambda j, s: (j, 0, 0, 0))]
  args = [p.reshape(m, kb, 2, _HALVES, _HALF) for p in paths]
  args += [w.codes.reshape(n, kb, _HALVES, _HALF), w.scales.reshape(n, kb, 1, 1)]
  if fused:
    args += [act_scale.reshape(1, 1), w.scale.reshape(1, 1)]
    in_specs += [pl.BlockSpec((1, 1), lambda j, s: (0, 0))] * 2
    if bias is not None:
      args.append(jnp.asarray(bias, jnp.float32).reshape(1, n))
      in_specs.append(pl.BlockSpec((1, bn), lambda j, s: (0, j)))
    out_shape = jax.ShapeDtypeStruct((m, n), out_dtype)
    out_spec = pl.BlockSpec((m, bn), lambda j, s: (0, j))
  else:
    out_shape = jax.ShapeDtypeStruct((cfg.split_k, m, n), jnp.float32)
    out_spec = pl.BlockSpec((None, m, bn), lambda j, s: (s, 0, j))
  kernel = functools.partial(_gemv_kernel, npaths=len(paths), m=m, cfg=cfg, n_iter=n_iter,
                             fused=fused, has_bias=fused and bias is not None,
                             gpu=not interpret)
  out = pl.pallas_call(
      kernel, grid=(n // bn, cfg.split_k), in_specs=in_specs, out_specs=out_spec,
      out_shape=out_shape, interpret=interpret,
      compiler_params=None if interpret else _compat.compiler_params(
          cfg.num_warps, cfg.num_stages),
      name=f"sharq_gemv_{cfg.tag()}")(*args)
  if fused:
    return out
  return finish_split_k(out, act_scale * w.scale * WEIGHT_FACTOR, bias, out_dtype)
