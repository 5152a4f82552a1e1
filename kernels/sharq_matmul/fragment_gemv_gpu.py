"""SharQ GEMV on tensor cores in the mma.sync fragment layout (Pallas, Triton lowering).

The MMA GEMV (mma_gemv_gpu) gives each lane of a warp its own weight row: a warp-wide
code or scale load touches 32 rows, one L1 line each, and the H200 profile of it (run
31) found the L1 the busiest unit (79 %) at 30 % of the HBM bandwidth. Here a quad of
lanes (4g..4g+3) holds the 32 contiguous code bytes (64 K) of one row, the layout in
which mma.sync.m16n8k16 takes its A operand: a warp-wide load touches 8 rows, 32 bytes
each.

How the fragments are filled. A code tile of shape (8, num_warps, 32 bytes) gets from
Triton's coalescing 8 bytes per thread along the contiguous dim, then the lanes along
the 8 rows, then the warps along the next dim (dims tied in contiguity go in index
order; the local sm_90a compile shows this layout): lane 4g + t holds bytes 8t..8t+7 of
row g. Decoded, they are 16 weights of row g in 8 float16 pairs, 4 per nibble plane. A
second tile gives rows g + 8. One m16n8k16 takes from every lane two pairs of each of
its rows (A rows g and g + 8, k = 2t, 2t+1, 2t+8, 2t+9) and two pairs of activations
(B, k the same, column g): the MMA's k runs over the quad's 4 lanes, i.e. over the
row's 64 K, so four MMAs per activation column consume a step. The permutation of K
this implies is the same for A and B (the activations are read in PathLayout.PLANES_64,
per 64 K the 32 even-K then the 32 odd-K values, the order of the bytes' nibbles), so
every D[g][n] is row g's product with B's column n over the step.

Every lane loads the same activation column (the B column index n is the lane's g), so
all 8 columns of D are equal: D[g][2t] in lane 4g + t is row g's sum; no lane needs
another's data, no B register is selected. A token's two paths (exact mode) run into
the same accumulators, one after the other. The products Ŵ'·2^-7 × path value are
exact in float32; only the summation order differs from the reference.

Each lane's 8 bytes lie in one 32-block of the step (lanes t = 0, 1 the first, 2, 3
the second): the E4M3 scales are loaded as one 16-bit word per row and step (both
blocks' bytes) and each lane takes its block's byte.

Interpret mode (CPU tests) runs the same tiles with plain float32 products per column
and row group instead of the PTX; tests/kernels/test_fragment_gemv.py runs the PTX on a
warp interpreter.

Measured on the H200 (BENCHMARKS.md "Session 9", runs 33-34): every check passed (exact
mode, M = 1, 2, both big Llama shapes; bad input with exactly the reference's NaN rows),
but it is slower than the MMA GEMV at M = 1 in exact mode (best tile 24.7 / default 26.2
against 22.1 us at 4096x14336, 23.9 / 24.0 against 21.2 at 14336x4096): fewer L1
sectors per load did not pay (benchmarks/sol_stream.py: loads alone take as long in
either tile), and a token's two paths need two MMA sets where the MMA GEMV packs both
into one. Timed in fast mode (one path; that output was not checked on the H200) it was
faster than the MMA GEMV at 4096x14336 (21.1-21.4 against 24.8 us). AUTO does not pick
it; sharq_gemm(impl="fragment_gemv") runs it.

Bad input: a NaN or Inf weight block (scale code 0x7F) decodes to NaN weights of its
row, which reach only D's row of that block: unlike mma_gemv_gpu, no B register holds
zeros for another row. NaN/Inf activations poison their token's outputs as in the
reference.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from sharq_jax.kernels import _compat
from sharq_jax.kernels import common
from sharq_jax.kernels.sharq_matmul.config import FragmentGemvConfig
from sharq_jax.kernels.sharq_matmul.gemv_gpu import gemv_operands
from sharq_jax.kernels.sharq_matmul.mma_gemv_gpu import inline_asm_f32, mma_step_lines, ptx_regs
from sharq_jax.kernels.sharq_matmul.packing import PackedWeight, rows_weight
from sharq_jax.kernels.sharq_matmul.pallas_gpu import WEIGHT_FACTOR, finish_split_k
from sharq_jax.kernels.sharq_prep.reference import PathLayout

_ROWS = 8  # rows per group and warp: the g of lane 4g + t
_STEP_BYTES = 32  # a row's code bytes per 64-K step: 8 per lane of the quad


def _mma_asm() -> str:
  """One step of one activation column, pack 8: $0..$7 the new accumulators (two chains
  of D = {rows g, g+8} x {columns 2t, 2t+1}: one chain per half of the lane's pairs);
  $8.. the float16 pairs lo0, lo1, hi0, hi1 (rows g / g+8, low / high nibbles) and the
  column's even and odd planes, 4 registers each; $32..$39 the accumulators in."""
  lo0, lo1, hi0, hi1, xe, xo = (ptx_regs(8 + 4 * i) for i in range(6))
  acc = ptx_regs(32, 8)
  # B: the lane's own activations, the same pairs as A's (no selects)
  lines = ["{", ".reg .f32 d<8>;"] + mma_step_lines(((lo0, lo1, xe), (hi0, hi1, xo)), acc)
  return "\n".join(lines)


_MMA_CONSTRAINTS = ",".join(["=f"] * 8 + ["r"] * 24 + ["f"] * 8)


def _extract_asm(group: int) -> str:
  """Accumulators (pack 8) -> float32: the row's sum (rows g, or g+8 for group 1: slot
  0, or 2, of both chains) in element 0 of lane t = 0 of the quad, zeros elsewhere (the
  other lanes hold the same sums), so a sum over the tile's last dim gives each row."""
  a = 8 + 2 * group
  return "\n".join([
      "{", ".reg .u32 t;", ".reg .pred p0;", ".reg .f32 s;", "mov.u32 t, %laneid;",
      "and.b32 t, t, 3;", "setp.eq.u32 p0, t, 0;", f"add.f32 s, ${a}, ${a + 4};",
      "selp.f32 $0, s, 0f00000000, p0;"]
      + [f"mov.f32 ${i}, 0f00000000;" for i in range(1, 8)] + ["}"])


_EXTRACT_CONSTRAINTS = ",".join(["=f"] * 8 + ["f"] * 8)


def _kernel(*refs, npaths: int, m: int, cfg: FragmentGemvConfig, n_iter: int, gpu: bool):
  x_refs = refs[:npaths]  # (1, 1, M, K/64, parity, 32) float16, PathLayout.PLANES_64
  # (16, W, K/2) code bytes or (16, W, K/8) words; (16, W, K/64) uint16 scale pairs
  w_ref, sc_ref, o_ref = refs[npaths:]
  nw = cfg.num_warps
  shape = (_ROWS, nw, _STEP_BYTES)
  width = _STEP_BYTES // 4 if cfg.queue_words else _STEP_BYTES
  it0 = pl.program_id(1) * n_iter

  def plane(p, tok, step, parity):
    if gpu:  # stride-0 row dims: every row reads the same activations
      return x_refs[p][pl.ds(0, _ROWS, stride=0), pl.ds(0, nw, stride=0), tok, step,
                       parity, :]
    return jnp.broadcast_to(x_refs[p][0, 0, tok, step, parity, :], shape)

  def load_x(it):
    """Per token and path (token-major): the step's even and odd planes."""
    step = it0 + it
    return tuple((plane(p, tok, step, 0), plane(p, tok, step, 1))
                 for tok in range(m) for p in range(npaths))

  def load(it):
    step = it0 + it
    rows = [pl.ds(g * _ROWS, _ROWS) for g in range(2)]
    return (tuple(w_ref[r, :, pl.ds(step * width, width)] for r in rows),
            tuple(sc_ref[r, :, pl.ds(step, 1)] for r in rows))

  # The 32-block of the step that each byte of a row's 32 lies in (lanes t >= 2: the
  # second): selects the scale byte. Built from an iota, so the same code is right in
  # interpret mode; on the GPU LLVM hoists it out of the loop.
  second_block = jax.lax.broadcasted_iota(jnp.int32, shape, 2) >= _STEP_BYTES // 2

  def decode(codes, scale_pair):
    """One row group's step: (lo, hi) float16 planes Ŵ'·2^-7, exact."""
    if cfg.queue_words:
      codes = common.words_to_bytes(codes)
    pair = scale_pair.astype(jnp.uint32)
    scales = [common.decode_e4m3_scale_f16(b) for b in (pair & 0xFF, pair >> 8)]
    scale = jnp.where(second_block, jnp.broadcast_to(scales[1], shape),
                      jnp.broadcast_to(scales[0], shape))
    lo, hi = common.decode_nibbles_f16(codes, gpu=gpu)
    return lo * scale, hi * scale

  def products(weights, xs, acc):
    (lo0, hi0), (lo1, hi1) = weights
    xe, xo = xs
    if gpu:
      return inline_asm_f32(_mma_asm(), (lo0, lo1, hi0, hi1, xe, xo, acc), _MMA_CONSTRAINTS)
    f32 = lambda v: v.astype(jnp.float32)  # noqa: E731
    return tuple(a + f32(lo) * f32(xe) + f32(hi) * f32(xo)
                 for a, (lo, hi) in zip(acc, weights))

  def multiply(it, weight_step, *rest):
    codes, scale_pairs = weight_step
    *queued, accs = rest
    planes = queued[0] if queued else load_x(it)
    weights = [decode(c, s) for c, s in zip(codes, scale_pairs)]
    out = []
    for tok, acc in enumerate(accs):  # a token's paths into one accumulator
      for xs in planes[tok * npaths:(tok + 1) * npaths]:
        acc = products(weights, xs, acc)
      out.append(acc)
    return tuple(out)

  zero = jnp.zeros(shape, jnp.float32)
  init = tuple(zero if gpu else (zero, zero) for _ in range(m))
  streams = [(load, cfg.prefetch)]
  if cfg.prefetch_activations:
    streams.append((load_x, cfg.prefetch_activations))
  accs = common.stream_queues(n_iter, streams, multiply, init)

  for tok, acc in enumerate(accs):
    for g in range(2):
      v = (inline_asm_f32(_extract_asm(g), (acc,), _EXTRACT_CONSTRAINTS) if gpu else acc[g])
      o_ref[pl.ds(tok, 1), pl.ds(g * _ROWS, _ROWS), :] = jnp.sum(v, axis=2)[None]


def fragment_gemv(paths, w: PackedWeight, *, act_scale: jax.Array, bias=None,
                  out_dtype=jnp.float32, config: FragmentGemvConfig,
                  planes: bool = False, interpret: bool = False) -> jax.Array:
  """s·s_w·2^7 · Σ_p paths[p] · (Ŵ'·2^-7)ᵀ (+ bias) for M <= FRAGMENT_GEMV_MAX_M tokens.

  Args:
    paths: (M, K) float16 activation paths (1 or 2) in PathLayout.MMA, or with
      planes=True in PathLayout.PLANES_64 (sharq_prep(..., layout=PathLayout.PLANES_64)).
    w: the packed weight.
    act_scale: the activations' tensor scale s (float32 scalar, Prepared.scale).
    bias: optional (N,) float32.
    out_dtype: output dtype.
    config: tile config (checked against the shape).
    planes: whether the paths are in PathLayout.PLANES_64 (else XLA permutes them).
    interpret: Pallas interpret mode (CPU tests): float32 products instead of the PTX.

  The kernel writes float32 partials per K split; XLA sums them, applies s·s_w·2^7 and
  the bias, and casts to out_dtype. A tiled weight (WeightLayout) is converted to rows
  first (one extra pass).
  """
  w = rows_weight(w)
  paths, m, k, n, n_iter = gemv_operands(paths, w, config, planes, PathLayout.PLANES_64)
  nw, steps = config.num_warps, k // config.block_k
  args = [p.reshape(1, 1, m, steps, 2, _STEP_BYTES) for p in paths]
  codes = w.codes.reshape(n // nw, nw, k // 2)
  if config.queue_words:
    codes = common.bytes_to_words(codes)
  # Both 32-blocks' scale bytes of a row and step as one little-endian uint16.
  scale_pairs = jax.lax.bitcast_convert_type(w.scales.reshape(n // nw, nw, steps, 2),
                                             jnp.uint16)
  args += [codes, scale_pairs]
  in_specs = [pl.BlockSpec((1, 1, m, steps, 2, _STEP_BYTES), lambda j, s: (0,) * 6)
              ] * len(paths)
  in_specs += [pl.BlockSpec((2 * _ROWS,) + codes.shape[1:], lambda j, s: (j, 0, 0)),
               pl.BlockSpec((2 * _ROWS, nw, steps), lambda j, s: (j, 0, 0))]
  kernel = functools.partial(_kernel, npaths=len(paths), m=m, cfg=config, n_iter=n_iter,
                             gpu=not interpret)
  out = pl.pallas_call(
      kernel, grid=(n // config.block_n, config.split_k), in_specs=in_specs,
      out_specs=pl.BlockSpec((None, m, 2 * _ROWS, nw), lambda j, s: (s, 0, j, 0)),
      out_shape=jax.ShapeDtypeStruct((config.split_k, m, n // nw, nw), jnp.float32),
      interpret=interpret,
      compiler_params=None if interpret else _compat.compiler_params(
          config.num_warps, config.num_stages),
      name=f"sharq_fragment_gemv_{config.tag()}")(*args)
  return finish_split_k(out.reshape(config.split_k, m, n),
                        act_scale * w.scale * WEIGHT_FACTOR, bias, out_dtype)
