"""SharQ GEMM kernels (Pallas, Triton lowering): Y = s·s_w · Σ_p P_p · Ŵ'ᵀ.

`packed_gemm` streams the FP4 payload (codes + E4M3 scales, 0.53 B/param) and decodes
it in registers by bit moves: each nibble becomes E2M1·2^-14 in float16, each scale
E4M3·2^7, and their float16 product is Ŵ'·2^-7 exactly; the 2^7 goes to the epilogue.
Every activation path (Ŝ and R̂, or their fast-mode sum) multiplies the same decoded
tile, so the weight is read once. Small M spreads K over programs (split-K).

`dense_gemm` is the large-M variant over a weight expanded once per call to float16
(an exact copy of Ŵ'), so the MMA runs at the 16-bit rate while the payload at rest
stays FP4.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import pallas as pl

from sharq_jax.kernels import _compat
from sharq_jax.kernels import common
from sharq_jax.kernels.sharq_matmul.config import (DenseGemmConfig, Interleave, Orient,
                                                   PackedGemmConfig)
from sharq_jax.kernels.sharq_matmul.packing import PackedWeight, rows_weight

_DOT_NT = (((1,), (1,)), ((), ()))  # contract the last axes: A · Bᵀ


def _dot_nt(a, b):
  return jax.lax.dot_general(a, b, _DOT_NT, preferred_element_type=jnp.float32)


def _epilogue_store(o_ref, acc, factor, bias, row_ok, orient: Orient):
  if orient is Orient.WX:
    acc = acc.T
  y = acc * factor
  if bias is not None:
    y = y + bias
  _compat.masked_store(o_ref, y.astype(o_ref.dtype), jnp.broadcast_to(row_ok, y.shape))


def _decode_tile(wb, sc_bits, *, gpu: bool, use_asm: bool):
  """(bn, nb, 16) packed bytes + (bn, nb) E4M3 bits -> (lo, hi) float16 Ŵ'·2^-7."""
  scale = common.decode_e4m3_scale_f16(sc_bits)[..., None]  # (bn, nb, 1)
  lo, hi = common.decode_nibbles_f16(wb, gpu=gpu, use_asm=use_asm)
  return lo * scale, hi * scale  # exact in float16


def _packed_kernel(*refs, npaths: int, m: int, cfg: PackedGemmConfig, n_iter: int,
                   fused: bool, has_bias: bool, gpu: bool):
  a_refs = refs[:npaths]
  w_ref, sc_ref = refs[npaths:npaths + 2]  # (bn, K/32, 16) bytes, (bn, K/32) scales
  rest = refs[npaths + 2:]
  o_ref = rest[-1]
  bm, bn, bk = cfg.block_m, cfg.block_n, cfg.block_k
  nb = bk // 32
  rows = pl.program_id(0) * bm + jax.lax.broadcasted_iota(jnp.int32, (bm, 1), 0)
  row_ok = rows < m
  it0 = pl.program_id(2) * n_iter
  xw = cfg.orient is Orient.XW

  def load_a(ref, start, size, stride=1):
    return _compat.masked_load(ref.at[:, pl.ds(start, size, stride=stride)],
                               jnp.broadcast_to(row_ok, (bm, size)), 0.0)

  def mma(acc, a, w):
    return acc + (_dot_nt(a, w) if xw else _dot_nt(w, a))

  def body(it, acc):
    kb0 = (it0 + it) * nb
    k0 = kb0 * 32
    lo, hi = _decode_tile(w_ref[:, pl.ds(kb0, nb), :], sc_ref[:, pl.ds(kb0, nb)],
                          gpu=gpu, use_asm=cfg.asm_decode)
    if cfg.interleave is Interleave.JOIN:
      w = jnp.stack([lo, hi], axis=-1).reshape(bn, bk)  # natural K order
      for a_ref in a_refs:
        acc = mma(acc, load_a(a_ref, k0, bk), w)
    else:  # even K against the low nibbles, odd K against the high ones
      lo, hi = lo.reshape(bn, bk // 2), hi.reshape(bn, bk // 2)
      for a_ref in a_refs:
        if gpu:
          ae, ao = load_a(a_ref, k0, bk // 2, 2), load_a(a_ref, k0 + 1, bk // 2, 2)
        else:  # interpret mode has no strided masked loads
          pair = load_a(a_ref, k0, bk).reshape(bm, bk // 2, 2)
          ae, ao = pair[..., 0], pair[..., 1]
        acc = mma(mma(acc, ae, lo), ao, hi)
    return acc

  acc0 = jnp.zeros((bm, bn) if xw else (bn, bm), jnp.float32)
  acc = jax.lax.fori_loop(0, n_iter, body, acc0)
  if fused:
    factor = rest[0][...]
    bias = rest[1][...] if has_bias else None
    _epilogue_store(o_ref, acc, factor, bias, row_ok, cfg.orient)
  else:
    _epilogue_store(o_ref, acc, 1.0, None, row_ok, cfg.orient)


def packed_gemm(paths, w: PackedWeight, factor: jax.Array, *, bias=None,
                out_dtype=jnp.float32, config: PackedGemmConfig, interpret: bool = False):
  """Σ_p paths[p] · (Ŵ'·2^-7)ᵀ · factor (+ bias), float32 accumulation.

  Args:
    paths: float16 (M, K) activation paths (1 or 2).
    w: the packed weight.
    factor: float32 scalar multiplying the accumulator (s·s_w·2^7 for Y).
    bias: optional (N,) float32.
    out_dtype: output dtype.
    config: tile config (checked against the shape).
    interpret: Pallas interpret mode (CPU tests).

  A tiled weight (WeightLayout) is converted to rows first (one extra pass).
  """
  w = rows_weight(w)
  m, k = paths[0].shape
  n = w.n
  cfg = config
  cfg.check(m, n, k)
  kb = k // 32
  n_iter = k // (cfg.split_k * cfg.block_k)
  bm, bn = cfg.block_m, cfg.block_n
  grid = (pl.cdiv(m, bm), n // bn, cfg.split_k)
  fused = cfg.split_k == 1
  in_specs = [pl.BlockSpec((bm, k), lambda i, j, s: (i, 0))] * len(paths)
  in_specs += [pl.BlockSpec((bn, kb, 16), lambda i, j, s: (j, 0, 0)),
               pl.BlockSpec((bn, kb), lambda i, j, s: (j, 0))]
  args = [*paths, w.codes.reshape(n, kb, 16), w.scales]
  if fused:
    args.append(jnp.asarray(factor, jnp.float32).reshape(1, 1))
    in_specs.append(pl.BlockSpec((1, 1), lambda i, j, s: (0, 0)))
    if bias is not None:
      args.append(jnp.asarray(bias, jnp.float32).reshape(1, n))
      in_specs.append(pl.BlockSpec((1, bn), lambda i, j, s: (0, j)))
    out_shape = jax.ShapeDtypeStruct((m, n), out_dtype)
    out_spec = pl.BlockSpec((bm, bn), lambda i, j, s: (i, j))
  else:
    out_shape = jax.ShapeDtypeStruct((cfg.split_k, m, n), jnp.float32)
    out_spec = pl.BlockSpec((None, bm, bn), lambda i, j, s: (s, i, j))
  kernel = functools.partial(_packed_kernel, npaths=len(paths), m=m, cfg=cfg,
                             n_iter=n_iter, fused=fused,
                             has_bias=fused and bias is not None, gpu=not interpret)
  out = pl.pallas_call(
      kernel, grid=grid, in_specs=in_specs, out_specs=out_spec, out_shape=out_shape,
      interpret=interpret,
      compiler_params=None if interpret else _compat.compiler_params(
          cfg.num_warps, cfg.num_stages),
      name="sharq_packed_gemm")(*args)
  if fused:
    return out
  return finish_split_k(out, factor, bias, out_dtype)


def finish_split_k(partials, factor, bias, out_dtype):
  """Σ over the split-K partials (split, M, N), times factor, + bias, cast (XLA)."""
  y = jnp.sum(partials, axis=0) * jnp.asarray(factor, jnp.float32)
  if bias is not None:
    y = y + jnp.asarray(bias, jnp.float32)
  return y.astype(out_dtype)


def _dense_kernel(*refs, npaths: int, m: int, cfg: DenseGemmConfig, n_iter: int,
                  has_bias: bool):
  a_refs = refs[:npaths]
  w_ref, f_ref = refs[npaths:npaths + 2]
  bias_ref = refs[npaths + 2] if has_bias else None
  o_ref = refs[-1]
  bm, bk = cfg.block_m, cfg.block_k
  rows = pl.program_id(0) * bm + jax.lax.broadcasted_iota(jnp.int32, (bm, 1), 0)
  row_ok = rows < m

  def body(it, acc):
    k0 = pl.multiple_of(it * bk, bk)
    w = w_ref[:, pl.ds(k0, bk)]
    for a_ref in a_refs:
      a = _compat.masked_load(a_ref.at[:, pl.ds(k0, bk)],
                              jnp.broadcast_to(row_ok, (bm, bk)), 0.0)
      acc = acc + _dot_nt(a, w)
    return acc

  acc = jax.lax.fori_loop(0, n_iter, body, jnp.zeros((bm, cfg.block_n), jnp.float32))
  bias = bias_ref[...] if has_bias else None
  _epilogue_store(o_ref, acc, f_ref[...], bias, row_ok, Orient.XW)


def dense_gemm(paths, w16: jax.Array, factor: jax.Array, *, bias=None,
               out_dtype=jnp.float32, config: DenseGemmConfig, interpret: bool = False):
  """Σ_p paths[p] · w16ᵀ · factor (+ bias) over an expanded float16 weight (N, K)."""
  m, k = paths[0].shape
  n = w16.shape[0]
  cfg = config
  cfg.check(m, n, k)
  bm, bn = cfg.block_m, cfg.block_n
  in_specs = [pl.BlockSpec((bm, k), lambda i, j: (i, 0))] * len(paths)
  in_specs += [pl.BlockSpec((bn, k), lambda i, j: (j, 0)),
               pl.BlockSpec((1, 1), lambda i, j: (0, 0))]
  args = [*paths, w16, jnp.asarray(factor, jnp.float32).reshape(1, 1)]
  if bias is not None:
    args.append(jnp.asarray(bias, jnp.float32).reshape(1, n))
    in_specs.append(pl.BlockSpec((1, bn), lambda i, j: (0, j)))
  kernel = functools.partial(_dense_kernel, npaths=len(paths), m=m, cfg=cfg,
                             n_iter=k // cfg.block_k, has_bias=bias is not None)
  return pl.pallas_call(
      kernel, grid=(pl.cdiv(m, bm), n // bn), in_specs=in_specs,
      out_specs=pl.BlockSpec((bm, bn), lambda i, j: (i, j)),
      out_shape=jax.ShapeDtypeStruct((m, n), out_dtype), interpret=interpret,
      compiler_params=None if interpret else _compat.compiler_params(
          cfg.num_warps, cfg.num_stages),
      name="sharq_dense_gemm")(*args)


def _expand_kernel(w_ref, sc_ref, o_ref, *, bn: int, bk: int, gpu: bool, use_asm: bool):
  lo, hi = _decode_tile(w_ref[...], sc_ref[...], gpu=gpu, use_asm=use_asm)
  o_ref[...] = jnp.stack([lo, hi], axis=-1).reshape(bn, bk)


def expand_weight_pallas(w: PackedWeight, *, block_n: int = 64, block_k: int = 256,
                         num_warps: int = 4, use_asm: bool = True,
                         interpret: bool = False) -> jax.Array:
  """Ŵ'·2^-7 as float16 (N, K), decoded by bit moves (the prefill weight, once per call;
  a tiled weight is converted to rows first)."""
  w = rows_weight(w)
  n, k = w.n, w.k
  while k % block_k:
    block_k //= 2
  while n % block_n:
    block_n //= 2
  nb = block_k // 32
  return pl.pallas_call(
      functools.partial(_expand_kernel, bn=block_n, bk=block_k, gpu=not interpret,
                        use_asm=use_asm),
      grid=(n // block_n, k // block_k),
      in_specs=[pl.BlockSpec((block_n, nb, 16), lambda i, j: (i, j, 0)),
                pl.BlockSpec((block_n, nb), lambda i, j: (i, j))],
      out_specs=pl.BlockSpec((block_n, block_k), lambda i, j: (i, j)),
      out_shape=jax.ShapeDtypeStruct((n, k), jnp.float16), interpret=interpret,
      compiler_params=None if interpret else _compat.compiler_params(num_warps, 1),
      name="sharq_expand_weight")(w.codes.reshape(n, k // 32, 16), w.scales)


WEIGHT_FACTOR = np.float32(2.0**-common.WEIGHT_F16_EXPONENT)  # 2^7: undo Ŵ'·2^-7
