"""SharQ GEMV on int8 tensor cores (Pallas, Triton lowering): E2M1 codes × E2M1 codes.

The float16 MMA GEMV (mma_gemv_gpu) turns every nibble into a scaled float16 weight
(~83 of its ~152 SASS per warp and step, kernels/NOTES.md v11). Here the products run
on the codes and the block scales are applied to the sums afterwards:

- 2 × an E2M1 value is an integer in [-12, 12]. A weight nibble becomes that int8 by a
  table lookup: `prmt` with the 8 doubled magnitudes as its table and 4 nibbles as its
  selectors gives 4 bytes per instruction. A selector nibble with bit 3 (the E2M1 sign)
  set makes prmt replicate the chosen byte's top bit, 0 here, so that lookup keeps the
  positive nibbles and zeroes the negative ones; the same lookup on the word with its
  sign bits flipped gives the negative nibbles' magnitudes. Two int8 MMA chains
  (positive, negative) and one int32 subtraction give Σ (2w)(2x) exactly.
- The activations arrive as int8 too (PathLayout.INT8: the two paths' doubled E2M1
  values, with their float32 block scales per 16 columns apart), written by the prep.
- `mma.sync.m16n8k32.s32.s8.s8` (IMMA, native on sm_90; an e4m3 mma.sync is emulated
  there by conversions to float16) multiplies them in int32: exact.
- Per step and row, float32 FMAs add sum · (weight block scale · activation block scale)
  to the row's accumulator; the scale product of two E4M3 values is exact and so is each
  term, so only the float32 summation order differs from the reference. The wrapper
  multiplies by s · s_w / 4.

Lanes and fragments. Triton gives the code tile (rows as the leading dims, 2 words = 16
weights per thread and row group) a layout in which the 32 lanes of a warp hold 32
different rows and the same 16 K positions (mma_gemv_gpu explains it; the H200 checks
compare every shape with the float32 reference). A lane supplies its own two rows'
bytes as A's rows g and g+8. B's column n takes activations only from the lane of quad
position t = n // 2 (of column group g = n), the column's parity choosing the path; the
lane picks its column in the asm from %laneid (loads masked by tile position gave wrong
sums on the H200, run 50). Then D[g][2t] and D[g][2t+1], the C registers of lane
(g, t), are that lane's own row times the backbone and the residual: no value crosses
lanes after the MMAs.

Bad input: a NaN/Inf weight block (E4M3 scale 0x7F) gives a NaN scale, which reaches
only its own row's accumulator (codes are finite, so no NaN enters the MMAs); a NaN
activation block scale poisons its token's outputs, as in the reference.

Scope: exact mode only (a fast-mode sum Ŝ + R̂ is not an E2M1 value), M <= 8 tokens (one
MMA group per token and step), N and K multiples of 64.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import pallas as pl

from sharq_jax.kernels import _compat
from sharq_jax.kernels import common
from sharq_jax.kernels.sharq_matmul.config import MmaGemvConfig
from sharq_jax.kernels.sharq_matmul.mma_gemv_gpu import (check_weight_tile,
                                                         load_weight_step, weight_operands)
from sharq_jax.kernels.sharq_matmul.packing import PackedWeight
from sharq_jax.kernels.sharq_matmul.pallas_gpu import finish_split_k

_IMMA = "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32"
# 2 × the E2M1 magnitudes 0, 0.5, 1, 1.5 and 2, 3, 4, 6 as bytes (prmt's table).
_TWICE_E2M1_LO, _TWICE_E2M1_HI = 0x03020100, 0x0C080604
_BLOCKS, _HALVES, _WORDS = 2, 2, 2  # per step: 2 32-blocks × 2 halves × 2 code words
INT8_GEMV_MAX_M = 8


def _decode_lines(word: str, regs: str) -> list[str]:
  """PTX: the 8 nibbles of `word` (natural K order) → 2·|value| as int8 bytes, the
  positive nibbles' in {regs}p (K 0-3 in register 0, K 4-7 in 1) and the negative
  ones' in {regs}n (zeros elsewhere). prmt's sign mode (selector bit 3) replicates the
  chosen table byte's top bit, 0, so the nibble's own sign bit zeroes it; flipping the
  sign bits first selects the other half."""
  return [f"xor.b32 neg, {word}, 0x88888888;",
          f"prmt.b32 {regs}p0, tlo, thi, {word};", f"prmt.b32 {regs}n0, tlo, thi, neg;",
          f"shr.b32 top, {word}, 16;", "shr.b32 neg, neg, 16;",
          f"prmt.b32 {regs}p1, tlo, thi, top;", f"prmt.b32 {regs}n1, tlo, thi, neg;"]


@functools.cache  # the same text for every token and step of every trace
def _step_asm() -> str:
  """One step (16 K per lane) for one token, pack 2: $0, $1 the new accumulators of
  row groups 0 and 1; inputs the code words of groups 0 ($2, $3) and 1 ($4, $5); the
  backbone's int8 activation words 0-1 ($6, $7) and 2-3 ($8, $9), the residual's
  ($10 .. $13); the E4M3 weight scale bytes of groups 0 ($14) and 1 ($16); the
  backbone's and the residual's activation block scales ($18, $19); prmt's table
  (_TWICE_E2M1, $20, $21: loaded once from memory, so that ptxas keeps it in two
  registers instead of rematerialising it before every prmt); the accumulators in
  ($22, $23)."""
  lines = ["{", ".reg .u32 lane, g, t, gh, gp;", ".reg .pred pon, pres;",
           ".reg .b32 tlo, thi, neg, top, wsp, hp, b<4>;",
           ".reg .b32 " + ", ".join(f"w{i}{s}{h}" for i in range(4) for s in "pn"
                                     for h in range(2)) + ";",
           ".reg .s32 dp<4>, dn<4>, z;",
           ".reg .b16 wsh, wsx;", ".reg .f16 h0, h1;",
           ".reg .f32 c<4>, s0, s1, p<4>, acc0, acc1;",
           "mov.b32 tlo, $20;", "mov.b32 thi, $21;", "mov.b32 z, 0;",
           "mov.u32 lane, %laneid;", "shr.u32 g, lane, 2;", "and.b32 t, lane, 3;",
           "shr.u32 gh, g, 1;", "setp.eq.u32 pon, t, gh;",
           "and.b32 gp, g, 1;", "setp.ne.u32 pres, gp, 0;"]
  # B: column g takes this lane's activations only if t == g // 2, its parity picking
  # the path (backbone even, residual odd); zeros otherwise.
  for i in range(4):
    lines += [f"selp.b32 b{i}, ${10 + i}, ${6 + i}, pres;", f"selp.b32 b{i}, b{i}, 0, pon;"]
  # word j of group r → registers w{2j + r}
  for j in range(_WORDS):
    for r in range(2):
      lines += _decode_lines(f"${2 + 2 * r + j}", f"w{2 * j + r}")
  for sign in "pn":  # A = {rows g K lo, rows g+8 K lo, rows g K hi, rows g+8 K hi}
    for j in range(_WORDS):
      src = "{z,z,z,z}" if j == 0 else f"{{d{sign}0,d{sign}1,d{sign}2,d{sign}3}}"
      a = [f"w{2 * j + r}{sign}{h}" for h in range(2) for r in range(2)]
      lines.append(f"{_IMMA} {{d{sign}0,d{sign}1,d{sign}2,d{sign}3}}, {{{','.join(a)}}}, "
                   f"{{b{2 * j},b{2 * j + 1}}}, {src};")
  for i in range(4):
    lines += [f"sub.s32 dp{i}, dp{i}, dn{i};", f"cvt.rn.f32.s32 c{i}, dp{i};"]
  lines += ["prmt.b32 wsp, $14, $16, 0x0040;",  # bytes (group 0, group 1)
            "mov.b32 {wsh, wsx}, wsp;", "cvt.rn.f16x2.e4m3x2 hp, wsh;",
            "mov.b32 {h0, h1}, hp;", "cvt.f32.f16 s0, h0;", "cvt.f32.f16 s1, h1;",
            "mul.f32 p0, s0, $18;", "mul.f32 p1, s0, $19;",
            "mul.f32 p2, s1, $18;", "mul.f32 p3, s1, $19;",
            "fma.rn.f32 acc0, c0, p0, $22;", "fma.rn.f32 acc0, c1, p1, acc0;",
            "fma.rn.f32 acc1, c2, p2, $23;", "fma.rn.f32 acc1, c3, p3, acc1;",
            "mov.f32 $0, acc0;", "mov.f32 $1, acc1;", "}"]
  return "\n".join(lines)


_STEP_CONSTRAINTS = ",".join(["=f"] * 2 + ["r"] * 16 + ["f"] * 2 + ["r"] * 2 + ["f"] * 2)
# One copy of the table per lane of a 4-warp tile row (8, 2, 4): loaded from distinct
# addresses, it is not warp-uniform, and ptxas keeps it in vector registers (from one
# shared copy it held a uniform register and copied it before every prmt).
_TWICE_E2M1 = np.tile(np.array([_TWICE_E2M1_LO, _TWICE_E2M1_HI], np.uint32),
                      (8, 2, 4, 1, 1, 1))


def _twice_e2m1_words(words: jax.Array) -> jax.Array:
  """Interpret mode: code words (..., 2) → 2 × their 16 E2M1 values, float32 (..., 16)
  in K order."""
  lo, hi = common.decode_nibbles_f16(common.words_to_bytes(words), gpu=False)
  both = jnp.stack([lo, hi], axis=-1).astype(jnp.float32) * np.float32(2.0**15)
  return both.reshape(*words.shape[:-1], 16)


def _int8_words(words: jax.Array) -> jax.Array:
  """Interpret mode: words of int8 bytes (..., n) → their values, float32 (..., 4n)."""
  b = common.words_to_bytes(words).astype(jnp.int32)
  return jnp.where(b >= 128, b - 256, b).astype(jnp.float32)


def _step_interpret(codes, ws, xs, acc):
  """The asm's arithmetic in float32 jnp: per row group and path Σ_16 (2·code) ·
  (2·activation) (exact integers), times weight scale × activation block scale, into
  the accumulator (element g of the last axis: row group g). xs: both paths' int8
  words 0-1 and 2-3 (..., 2) and the block scales (..., 2)."""
  b01, b23, r01, r23, sa = xs
  paths = (jnp.concatenate([b01, b23], axis=-1), jnp.concatenate([r01, r23], axis=-1))
  out = []
  for g in range(2):
    w = _twice_e2m1_words(codes[g])
    term = acc[..., g:g + 1]
    for p, words in enumerate(paths):
      c = jnp.sum(w * _int8_words(words), axis=-1, keepdims=True)
      term = term + c * (ws[g][..., :1] * sa[..., p:p + 1])
    out.append(term)
  return jnp.concatenate(out, axis=-1)


def _kernel(x_ref, xs_ref, table_ref, w_ref, sc_ref, o_ref, *, m: int, cfg: MmaGemvConfig,
            n_iter: int, tiled: bool, gpu: bool):
  # x_ref: (1, 2 paths, M, K/32, half, 4) uint32 words of int8 activations; xs_ref:
  # (1, 1, M, K/32, half, 2 paths) float32 block scales.
  nw = cfg.num_warps
  shape = (nw, 2, 4, _BLOCKS, _HALVES, _WORDS)
  it0 = pl.program_id(1) * n_iter
  if gpu:
    table = table_ref[pl.ds(0, nw), :, :, pl.ds(0, 2, stride=0), pl.ds(0, 2, stride=0), :]

  def load_x(it):
    """Per token: both paths' words 0-1 and 2-3 and the block scales, every lane the
    same K positions' (the asm picks the lane's column)."""
    kb0 = (it0 + it) * _BLOCKS
    out = []
    for t in range(m):
      def ld(ref, path, last):
        if gpu:  # stride-0 dims: the load has the code tile's shape and layout
          return ref[pl.ds(0, nw, stride=0), pl.ds(path, 2, stride=0), pl.ds(t, 4, stride=0),
                     pl.ds(kb0, _BLOCKS), :, last]
        v = ref[0, path, t, pl.ds(kb0, _BLOCKS), :, last]
        return jnp.broadcast_to(v, shape[:-1] + v.shape[-1:])
      words = tuple(ld(x_ref, p, pl.ds(2 * j, 2)) for p in range(2) for j in range(2))
      out.append(words + (ld(xs_ref, 0, slice(None)),))
    return tuple(out)

  def load(it):
    return load_weight_step(w_ref, sc_ref, it, it0=it0, num_warps=nw, tiled=tiled)

  def multiply(it, weight_step, *rest):
    codes, scale_bits = weight_step
    *queued, accs = rest
    xs_all = queued[0] if queued else load_x(it)
    if gpu:
      ws = [jnp.broadcast_to(sb.astype(jnp.uint32), shape) for sb in scale_bits]
      from jax.experimental.pallas import triton as plgpu  # pylint: disable=g-import-not-at-top
      return tuple(
          plgpu.elementwise_inline_asm(
              _step_asm(), args=[codes[0], codes[1], *xs[:4], ws[0], ws[1], xs[4], table, acc],
              constraints=_STEP_CONSTRAINTS, pack=2,
              result_shape_dtypes=[jax.ShapeDtypeStruct(shape, jnp.float32)])[0]
          for xs, acc in zip(xs_all, accs))
    ws = [jnp.broadcast_to(common.decode_e4m3_scale_f32(sb), shape) for sb in scale_bits]
    return tuple(_step_interpret(codes, ws, xs, acc) for xs, acc in zip(xs_all, accs))

  streams = [(load, cfg.prefetch)]
  if cfg.prefetch_activations:
    streams.append((load_x, cfg.prefetch_activations))
  accs = common.stream_queues(n_iter, streams, multiply,
                              (jnp.zeros(shape, jnp.float32),) * m,
                              after_loads=_compat.cta_barrier if gpu and cfg.pin_loads else None)
  group = jax.lax.broadcasted_iota(jnp.int32, shape, 5)
  for tok, acc in enumerate(accs):
    for g in range(2):  # element g of a thread's pair is its row of group g
      v = jnp.where(group == g, acc, 0.0)
      y = jnp.sum(jnp.sum(jnp.sum(v, axis=5), axis=4), axis=3)  # (nw, 2, 4): 8·nw rows
      o_ref[pl.ds(tok, 1), pl.ds(g * nw, nw), :, :] = y[None]


def int8_operands(codes, block_scales):
  """The kernel's activation operands from PathLayout.INT8 paths: the two paths' int8
  (M, K) as words (1, 2, M, K/32, 2, 4) and their float32 block scales (M, K/16) as
  (1, 1, M, K/32, 2, 2)."""
  m, k = codes[0].shape
  words = jnp.stack([common.bytes_to_words(
      jax.lax.bitcast_convert_type(c, jnp.uint8).reshape(m, k // 32, 2, 16))
      for c in codes])[None]
  scales = jnp.stack([jnp.asarray(s, jnp.float32).reshape(m, k // 32, 2)
                      for s in block_scales], axis=-1)
  return words, scales.reshape(1, 1, m, k // 32, 2, 2)


def int8_gemv(codes, block_scales, w: PackedWeight, *, act_scale: jax.Array, bias=None,
              out_dtype=jnp.float32, config: MmaGemvConfig,
              interpret: bool = False) -> jax.Array:
  """s·s_w · Σ_p P_p · Ŵ'ᵀ (+ bias) for M <= INT8_GEMV_MAX_M tokens, on int8 MMAs.

  Args:
    codes: the backbone's and the residual's activations as 2 × their E2M1 values,
      int8 (M, K) each (PathLayout.INT8, as sharq_prep writes them).
    block_scales: their block scales, float32 (M, K/16) each (the backbone's 32-block
      scale twice), NaN for a block made from NaN/Inf: P_p = codes / 2 · scale.
    w: the packed weight (row-major or WeightLayout.TILES_64, which needs num_warps=4).
    act_scale: the activations' tensor scale s.
    bias: optional float32 (N,).
    out_dtype: the result's dtype.
    config: the tile (MmaGemvConfig; queue_words and isolate_nan_rows do not apply:
      codes are always loaded as words and a NaN block's rows are always isolated).
    interpret: run in Pallas interpret mode (CPU tests): float32 sums instead of PTX.

  The kernel writes float32 partials per K split; XLA sums them, applies s·s_w / 4
  (both factors were doubled) and the bias, and casts to out_dtype.
  """
  if len(codes) != 2 or len(block_scales) != 2:
    raise ValueError("int8_gemv: takes exact-mode activations, two paths (backbone, "
                     f"residual) of codes and block scales; got {len(codes)} and "
                     f"{len(block_scales)}")
  m, k = codes[0].shape
  if m > INT8_GEMV_MAX_M:
    raise ValueError(f"int8_gemv: M = {m} > {INT8_GEMV_MAX_M} tokens")
  if any(c.dtype != jnp.int8 or c.shape != (m, k) for c in codes):
    raise ValueError("int8_gemv: codes must be int8 (M, K) arrays of one shape, got "
                     f"{[(c.dtype, c.shape) for c in codes]}")
  if any(jnp.shape(s) != (m, k // 16) for s in block_scales):
    raise ValueError(f"int8_gemv: block_scales must be ({m}, {k // 16}) arrays (one scale "
                     "per 16 columns; the backbone's 32-block scale twice), got "
                     f"{[jnp.shape(s) for s in block_scales]}")
  if k != w.k:
    raise ValueError(f"int8_gemv: activations have K={k} but the weight has K={w.k}")
  config.check(m, w.n, k)
  n_iter = k // (config.split_k * config.block_k)
  tiled = check_weight_tile(w, config, "int8_gemv")
  words, scales = int8_operands(codes, block_scales)
  w_args, w_specs = weight_operands(w, config, n_iter, words=True)
  n, nw = w.n, config.num_warps
  kernel = functools.partial(_kernel, m=m, cfg=config, n_iter=n_iter, tiled=tiled,
                             gpu=not interpret)
  out = pl.pallas_call(
      kernel, grid=(n // config.block_n, config.split_k),
      in_specs=[pl.BlockSpec(a.shape, lambda j, s: (0,) * 6)
                for a in (words, scales, _TWICE_E2M1)] + w_specs,
      out_specs=pl.BlockSpec((None, m, 2 * nw, 2, 4), lambda j, s: (s, 0, j, 0, 0)),
      out_shape=jax.ShapeDtypeStruct((config.split_k, m, n // 8, 2, 4), jnp.float32),
      interpret=interpret,
      compiler_params=None if interpret else _compat.compiler_params(
          config.num_warps, config.num_stages),
      name=f"sharq_int8_gemv_{config.tag()}")(words, scales, jnp.asarray(_TWICE_E2M1), *w_args)
  factor = jnp.asarray(act_scale, jnp.float32) * w.scale * np.float32(0.25)
  return finish_split_k(out.reshape(config.split_k, m, n), factor, bias, out_dtype)
