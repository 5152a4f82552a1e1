"""Fused SharQ preparation as a Pallas kernel (Triton lowering on NVIDIA GPUs).

Two passes over X, the fewest the global amax allows:
  1. stats (XLA): optional RMSNorm rstd per row and the tensor scale s = amax / 2688
     (PrepConfig.in_kernel_amax moves this pass into the kernel for decode-sized
     inputs: each program reads all of X from L2 first — one launch instead of three;
     default_config does so where the H200 measured it faster);
  2. this kernel, one program per (block_m, block_k) tile: RMSNorm → X' = X / s →
     4:8-pairs mask → backbone NVFP4 (blocks of 32, scale 1) → R = X' − Ŝ → residual
     NVFP4 (blocks of 16) → float16 paths, written once, in the column order the GEMM
     that reads them wants (PathLayout: MMA, or GEMV's nibble-plane order).
Bytes: read X twice (2·2 B/elem for bf16), write 2 B/elem per path.

Instructions per element are what bound this kernel at prefill (kernels/NOTES.md, v10):
the divisions skip div.rn's per-element reciprocal (common.div_rn_by_scale for X / s,
common.div_rn_short for the E4M3 block scales), the block amax and non-finite flag are
one integer max of |v|'s bits, and the E2M1 rounding picks its magic constant from the
exponent bits. The outputs stay the contract's bit for bit, except that a zero's sign
may differ where X holds values whose X / s falls below 2^-12 and is a few ulps off
(|x| below ~2^-100; see common.div_rn_by_scale).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import pallas as pl

from sharq_jax.kernels import _compat
from sharq_jax.kernels import common
from sharq_jax.kernels.sharq_prep import reference
from sharq_jax.kernels.sharq_prep.config import (AMAX_UNROLL_MAX_STEPS, PrepConfig,
                                                  amax_step, default_config)
from sharq_jax.kernels.sharq_prep.reference import PathLayout, PathMode, Prepared


def _abs_bits(v: jax.Array) -> jax.Array:
  """int32 bits of |v|: ordered as |v| for finite v, ≥ 0x7F800000 iff v is non-finite."""
  return jax.lax.bitcast_convert_type(v, jnp.int32) & np.int32(0x7FFFFFFF)


def _keep_mask(pair: jax.Array, bm: int, bk: int) -> jax.Array:
  """bool (bm, bk): the top-2 pairs of each 8 (ties to the lower index) by pair score.

  pair: (bm, bk / 2) maxima of _abs_bits(X') over each pair. NaN ranks above Inf here,
  where the contract ties them (its score maps NaN to Inf). That changes no output: a
  group holding any non-finite value keeps one, so its backbone block, and with it the
  whole 32-column block of both paths, is NaN either way.
  """
  p0, p1, p2, p3 = (v[..., 0] for v in jax.lax.split(pair.reshape(bm, bk // 8, 4),
                                                      (1, 1, 1, 1), axis=2))
  # Pair i is kept when it beats at least two of the other three (a tie goes to the
  # lower index): a majority of three comparisons, no argmax.
  def majority(a, b, c):
    return (a & b) | (c & (a | b))
  ge01, ge02, ge03, ge12, ge13, ge23 = (p0 >= p1, p0 >= p2, p0 >= p3, p1 >= p2,
                                        p1 >= p3, p2 >= p3)
  k0 = majority(ge01, ge02, ge03)
  k1 = majority(~ge01, ge12, ge13)
  k2 = majority(~ge02, ~ge12, ge23)
  k3 = majority(~ge03, ~ge13, ~ge23)
  # Pallas-Triton joins only two tensors along a new last axis, so k0..k3 are
  # interleaved in two rounds: [[k0, k1], [k2, k3]].
  keep = jnp.stack([jnp.stack([k0, k2], -1), jnp.stack([k1, k3], -1)], -1)
  keep = keep.reshape(bm, bk // 2)
  return jnp.broadcast_to(keep[..., None], (bm, bk // 2, 2)).reshape(bm, bk)


def _quantize_blocks(v: jax.Array, *, gpu: bool, amax_bits: jax.Array | None = None,
                     parts: bool = False):
  """DQ(Q(v)) for v (..., nb, B) with NVFP4 scale 1; NaN blocks where v is non-finite.

  With `parts`, also (q, d): the signed E2M1 values (..., nb, B) and the block scales
  (..., nb), NaN for a non-finite block, so that DQ(Q(v)) = q · d.

  Same values as the NumPy contract's, with fewer instructions per element: the block
  amax and the non-finite flag come from one integer max of |v|'s bits (or amax_bits,
  (..., nb), that max computed by the caller), and the quotient v / d_b from
  div_rn_short (E4M3 scales are short divisors).
  """
  if amax_bits is None:
    amax_bits = jnp.max(_abs_bits(v), axis=-1)
  bad = amax_bits >= np.int32(0x7F800000)
  amax = jax.lax.bitcast_convert_type(jnp.where(bad, 0, amax_bits), jnp.float32)
  d = common.nvfp4_block_scale(amax, gpu=gpu)
  pos = d > 0
  d_rcp = jnp.where(pos, common.rcp_rn_short(jnp.where(pos, d, 1.0), gpu=gpu), 0.0)
  q_mag = common.div_rn_short(v, d[..., None], d_rcp[..., None], gpu=gpu,
                              abs_cap=common.E2M1_MAX)
  mag = common.e2m1_round_nonneg(q_mag, capped=True)
  # The quotient's sign is v's where d_b > 0; an all-zero block gives +0 (the contract
  # divides only where d_b > 0, else q = +0).
  sign_mask = jnp.where(pos, np.uint32(0x80000000), np.uint32(0))[..., None]
  signed = jax.lax.bitcast_convert_type(
      jax.lax.bitcast_convert_type(mag, jnp.uint32)
      | (jax.lax.bitcast_convert_type(v, jnp.uint32) & sign_mask), jnp.float32)
  deq = jnp.where(bad[..., None], np.float32(np.nan), signed * d[..., None])
  if parts:  # a non-finite block's codes are 0 (its NaN scale carries the NaN)
    return (deq, jnp.where(bad[..., None], np.float32(0), signed),
            jnp.where(bad, np.float32(np.nan), d))
  return deq


def _whole_tensor_scale(x_ref, row_ok, k: int, bk: int, gpu: bool):
  """s = scale_from_amax(finite amax of all of x_ref), (1, 1) float32.

  Wide steps (config.amax_step), all loads issued together where there are few: a
  serial loop of bk-wide steps made the one-launch prep slower than three launches."""
  bm = row_ok.shape[0]
  step = amax_step(bm, k, bk)

  def load(i):
    return _compat.masked_load(x_ref.at[:, pl.ds(i * step, step)], row_ok, 0)

  def fold(acc, v):
    v = v.astype(jnp.float32)
    return jnp.maximum(acc, jnp.where(jnp.isfinite(v), jnp.abs(v), 0.0))

  acc = jnp.zeros((bm, step), jnp.float32)
  if k // step <= AMAX_UNROLL_MAX_STEPS:
    # Every load issued before the first max: one L2 round trip, not one per step (a
    # loop waits for each step's load before it issues the next).
    for v in [load(i) for i in range(k // step)]:
      acc = fold(acc, v)
  else:
    acc = jax.lax.fori_loop(0, k // step, lambda i, a: fold(a, load(i)), acc)
  amax = jnp.max(jnp.max(acc, axis=1, keepdims=True), axis=0, keepdims=True)
  s = common.div_rn(amax, jnp.full_like(amax, common.TENSOR_SCALE_DIVISOR), gpu=gpu)
  return jnp.where(amax > 0, s, 1.0)


def _prep_kernel(*refs, m: int, k: int, bm: int, bk: int, rmsnorm: bool, mode: PathMode,
                 in_kernel_amax: bool, layout: PathLayout, gpu: bool):
  if rmsnorm:
    x_ref, s_ref, rstd_ref, g_ref, *out_refs = refs
  elif in_kernel_amax:
    x_ref, *out_refs, s_out_ref = refs
  else:
    x_ref, s_ref, *out_refs = refs
  rows = pl.program_id(0) * bm + jax.lax.broadcasted_iota(jnp.int32, (bm, 1), 0)
  row_ok = rows < m
  if in_kernel_amax:  # x_ref holds all K columns; this program's tile is column block j
    s = _whole_tensor_scale(x_ref, row_ok, k, bk, gpu)

    @pl.when(pl.program_id(1) == 0)
    def _():
      s_out_ref[...] = s

    x = _compat.masked_load(x_ref.at[:, pl.ds(pl.program_id(1) * bk, bk)], row_ok, 0)
  else:
    s = s_ref[...]
    x = _compat.masked_load(x_ref, row_ok, 0)
  xf = x.astype(jnp.float32)
  if rmsnorm:
    rstd = _compat.masked_load(rstd_ref, row_ok, 0.0)
    y = (xf * rstd).astype(x.dtype).astype(jnp.float32)
    xf = (g_ref[...].astype(jnp.float32) * y).astype(x.dtype).astype(jnp.float32)
  xp = common.div_rn_by_scale(xf, s, gpu=gpu)

  score = _abs_bits(xp)
  sparse = jnp.where(_keep_mask(jnp.max(score.reshape(bm, bk // 2, 2), axis=-1), bm, bk),
                     xp, 0.0)
  # Each group of 8 keeps its largest pair, so the backbone block's amax (and its
  # non-finite flag) is the dense block's.
  backbone_amax = jnp.max(score.reshape(bm, bk // 32, 32), axis=-1)
  if layout is PathLayout.INT8:  # 2·E2M1 values and block scales per 16 columns
    s_hat, s_q, s_d = _quantize_blocks(sparse.reshape(bm, bk // 32, 32), gpu=gpu,
                                       amax_bits=backbone_amax, parts=True)
    resid = (xp - s_hat.reshape(bm, bk)).reshape(bm, bk // 16, 16)
    _, r_q, r_d = _quantize_blocks(resid, gpu=gpu, parts=True)
    codes_refs, scale_refs = out_refs[:2], out_refs[2:4]
    s_d16 = jnp.broadcast_to(s_d[..., None], (bm, bk // 32, 2)).reshape(bm, bk // 16)
    for ref, q in zip(codes_refs, (s_q, r_q)):
      _compat.masked_store(ref, (q.reshape(bm, bk) * 2.0).astype(jnp.int8), row_ok)
    for ref, d in zip(scale_refs, (s_d16, r_d)):
      _compat.masked_store(ref, d, row_ok)
    return
  s_hat = _quantize_blocks(sparse.reshape(bm, bk // 32, 32), gpu=gpu,
                           amax_bits=backbone_amax).reshape(bm, bk)
  resid = (xp - s_hat).reshape(bm, bk // 16, 16)
  r_hat = _quantize_blocks(resid, gpu=gpu).reshape(bm, bk)
  if mode is PathMode.EXACT:
    outs = (s_hat, r_hat)
  else:
    outs = (s_hat + r_hat,)
  for ref, val in zip(out_refs, outs):
    val = reference.to_layout(val, layout)  # a permutation inside each plane block
    _compat.masked_store(ref, val.astype(jnp.float16), row_ok)


def prep_stats(x2: jax.Array, gamma: jax.Array | None, eps: float):
  """The amax pass (XLA): (s, rstd or None)."""
  if gamma is None:
    return reference.tensor_scale(x2), None
  # The barrier keeps XLA from re-deriving rstd inside the amax fusion with another
  # reduction order: s must follow from exactly the rstd the kernel receives.
  rstd = jax.lax.optimization_barrier(reference.rms_stats(x2, eps))
  return reference.tensor_scale(reference.rms_apply(x2, gamma, rstd)), rstd


@functools.partial(jax.jit, static_argnames=("eps", "mode", "config", "layout",
                                             "interpret"))
def sharq_prep(x: jax.Array, *, gamma: jax.Array | None = None, eps: float = 1e-6,
               mode: PathMode = PathMode.EXACT, config: PrepConfig | None = None,
               scale: jax.Array | None = None, layout: PathLayout = PathLayout.MMA,
               interpret: bool = False) -> Prepared:
  """Prepares activations x (..., K) for the SharQ GEMM (see module docstring).

  Args:
    x: activations (..., K); K a multiple of 32; bf16, f16 or f32.
    gamma: optional RMSNorm weight (K,) applied first (model order of casts).
    eps: RMSNorm epsilon.
    mode: PathMode.EXACT (Ŝ and R̂) or PathMode.FAST (Ŝ + R̂ in one float16 path).
    config: tile config; default_config(M, K) if None.
    scale: the tensor scale s to use instead of this x's own, for x a shard of a
      larger tensor (row-parallel layers: scale_from_amax of the pmax of the shards'
      finite_amax), so every shard is quantized as the whole tensor would be. With
      gamma the RMSNorm statistics are this x's own rows: right for a token shard
      (whole rows), wrong for a K shard — normalise K-sharded inputs before. The
      kernel's division by s is exact for |x / s| ≤ 2^100 (common.div_rn_by_scale);
      a scale from any tensor holding x keeps it ≤ 2688.
    layout: the column order of the paths written: PathLayout.MMA (column order),
      PathLayout.GEMV or PLANES_64 (nibble-plane order per 32- or 64-block, what the
      GEMV kernels read; a permutation inside each block, done in the same pass), or
      PathLayout.INT8 (exact mode: 2 × the E2M1 values as int8 and the block scales
      apart, what the int8 GEMV reads).
    interpret: run the Pallas kernel in interpret mode (CPU tests).

  Returns:
    Prepared with float16 (M, K) paths in `layout`, M = prod(x.shape[:-1]); in
    PathLayout.INT8 int8 (M, K) paths and float32 (M, K/16) block_scales.
  """
  mode, layout = PathMode(mode), PathLayout(layout)
  k = x.shape[-1]
  if k % reference.K_MULTIPLE:
    raise ValueError(f"sharq_prep: K={k} of shape {x.shape} is not a multiple of "
                     f"{reference.K_MULTIPLE}")
  x2 = x.reshape(-1, k)
  m = x2.shape[0]
  cfg = config or default_config(m, k)
  if k % cfg.block_k:
    raise ValueError(f"sharq_prep: K={k} is not a multiple of block_k={cfg.block_k}")
  if layout.plane_block and cfg.block_k % layout.plane_block:
    raise ValueError(f"sharq_prep: layout {layout.value} permutes {layout.plane_block}-"
                     f"column blocks; K={k} with block_k={cfg.block_k} does not split "
                     f"into them")
  bm, bk = cfg.block_m, cfg.block_k
  # The amax moves into the kernel only where one row block holds the whole tensor.
  in_kernel_amax = cfg.in_kernel_amax and scale is None and gamma is None and m <= bm
  tile = pl.BlockSpec((bm, bk), lambda i, j: (i, j))
  scalar = pl.BlockSpec((1, 1), lambda i, j: (0, 0))
  if layout is PathLayout.INT8:
    if mode is not PathMode.EXACT:
      raise ValueError("sharq_prep: PathLayout.INT8 holds the two paths' E2M1 values "
                       "apart (exact mode); fast mode's Ŝ + R̂ is not one")
    out_shape = ([jax.ShapeDtypeStruct((m, k), jnp.int8)] * 2
                 + [jax.ShapeDtypeStruct((m, k // 16), jnp.float32)] * 2)
    out_specs = [tile] * 2 + [pl.BlockSpec((bm, bk // 16), lambda i, j: (i, j))] * 2
  else:
    out_shape = [jax.ShapeDtypeStruct((m, k), jnp.float16)] * mode.num_paths
    out_specs = [tile] * mode.num_paths
  rstd = None
  if in_kernel_amax:
    args, in_specs = [x2], [pl.BlockSpec((bm, k), lambda i, j: (i, 0))]
    out_shape.append(jax.ShapeDtypeStruct((1, 1), jnp.float32))
    out_specs.append(scalar)
  else:
    if scale is None:
      s, rstd = prep_stats(x2, gamma, eps)
    else:
      s = jnp.asarray(scale, jnp.float32).reshape(())
      rstd = None if gamma is None else reference.rms_stats(x2, eps)
    args, in_specs = [x2, s.reshape(1, 1)], [tile, scalar]
  if gamma is not None:
    args += [rstd, gamma.reshape(1, k)]
    in_specs += [pl.BlockSpec((bm, 1), lambda i, j: (i, 0)),
                 pl.BlockSpec((1, bk), lambda i, j: (0, j))]
  kernel = functools.partial(_prep_kernel, m=m, k=k, bm=bm, bk=bk,
                             rmsnorm=gamma is not None, mode=mode,
                             in_kernel_amax=in_kernel_amax, layout=layout,
                             gpu=not interpret)
  outs = pl.pallas_call(
      kernel, grid=(pl.cdiv(m, bm), k // bk), in_specs=in_specs, out_specs=out_specs,
      out_shape=out_shape, interpret=interpret,
      compiler_params=None if interpret else _compat.compiler_params(
          cfg.num_warps, cfg.num_stages),
      name="sharq_prep")(*args)
  if in_kernel_amax:
    *outs, s = outs
    s = s.reshape(())
  if layout is PathLayout.INT8:
    return Prepared(paths=tuple(outs[:2]), scale=s, rstd=rstd, mode=mode, layout=layout,
                    block_scales=tuple(outs[2:]))
  return Prepared(paths=tuple(outs), scale=s, rstd=rstd, mode=mode, layout=layout)
