"""SharQ GEMV on tensor cores (Pallas, Triton lowering): a few tokens, FP4 weights.

The CUDA-core GEMV (gemv_gpu) spends ~8 instructions per weight: decode, scale, widen
to float32 and one float32 FMA per token and path. Here each warp's products run on
`mma.sync.m16n8k16` (float16 in, float32 accumulate) issued from inline PTX on the
registers each thread already holds, so the FMAs and the float32 conversions go away
and a token costs one MMA group per step instead of 2·16 FMAs per thread.

How the fragments are filled without moving data between threads. Triton gives the
tiles used here (rows as the leading dims, 8 code bytes = 16 weights per thread) a
layout in which the 32 lanes of a warp hold 32 different weight rows and the *same* 16
K positions κ (their warps differ in K). An MMA sums over k across the 4 lanes of a
quad (lanes 4g..4g+3), whose rows differ. So each lane supplies its own row's weights
as A (rows g and g+8 of A are the lane's rows in the two row groups) and the
activations of its κ as B only if its quad position t equals g mod 4, else zeros:

    D[g][n] = Σ_k A[g][k]·B[k][n] = row(lane 4g + n%4) · x_n  over κ.

Column n < 4 carries one activation column (a path of a token), n ≥ 4 another, so one
MMA gives every row of the warp its products with two activation columns, exactly (the
products Ŵ'·2^-7 × path value are exact in float32; only the summation order differs
from the reference). After the K loop, shuffles bring D[g][n] to the lane that holds
row(lane 4g + n%4).

The layout is Triton's choice (its coalescing orders tied dims by index); the PTX
assumes it. The H200 checks (benchmarks/bench_decode.py --sections check) compare every
shape against the float32 reference; interpret mode (CPU tests) runs the same tiles
with plain float32 products instead of the PTX.

The tiles are (num_warps, 2, 4, 2 blocks, 2 halves, 8 bytes): 8 code bytes (16
weights) per thread and tensor: the design of the session-6 prototype (run 18). This
module passed the H200's checks at every tile, mode and M it was timed at in session 7
(runs 21-25, with the prefetch ring that is now common.stream_queues) and at every tile
of session 8 (runs 26-32; exact mode at the timed M in the probes, both modes at M = 1,
2 for the defaults in run 28). A variant that carried codes and activations in int32
words through the whole kernel gave wrong results there and was not kept
(kernels/NOTES.md, v6). Here only the prefetch queue holds words
(MmaGemvConfig.queue_words): they are unpacked to the byte tile before the decode, in
the register layout a direct byte load gets (local compile).

Bad input: a NaN or Inf weight block (an E4M3 scale code 0x7F, only made from NaN/Inf
weights) decodes to NaN weights. In the MMA these also meet the zeros that B holds for
the other 3 rows of the quad. IEEE arithmetic would make NaN·0 = NaN there and poison
those rows too, but on the H200 the mma.sync products do not: in every default-mode
bad-input check of runs 26-30 (probe_mma_gemv: 40 checks, both big shapes, M = 1-3)
the NaN rows were exactly the reference's. The PTX ISA does not promise this, so the
probe checks it on every run. MmaGemvConfig(isolate_nan_rows=True) does not rely on it:
bad blocks enter the MMAs as zeros, and a per-row flag carried through the K loop
restores NaN after the shuffles (checked on the H200 in run 25, where it cost 22.0 ->
31.1 us at 4096x14336, M = 1: the flag loads every step's scale bytes a second time in
another register layout). Finite inputs give the reference's products exactly; NaN/Inf
activations poison their token's outputs as in the reference.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from sharq_jax.kernels import _compat
from sharq_jax.kernels import common
from sharq_jax.kernels.sharq_matmul.config import MmaGemvConfig
from sharq_jax.kernels.sharq_matmul.gemv_gpu import gemv_operands
from sharq_jax.kernels.sharq_matmul.packing import TILE, PackedWeight, WeightLayout
from sharq_jax.kernels.sharq_matmul.pallas_gpu import WEIGHT_FACTOR, finish_split_k

_MMA_SYNC = "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32"
# Per 32-block: 2 halves of 8 code bytes, each against 8 even-K and 8 odd-K float16
# activations (PathLayout.GEMV, as in gemv_gpu). Two 32-blocks per step.
_BLOCKS, _HALVES, _HALF = 2, 2, 8


def inline_asm_f32(text: str, args, constraints: str):
  """One float32 result of args[-1]'s shape from PTX `text`, 8 elements per thread and
  operand (pack 8: a thread's 8 code bytes, float16 values or float32 sums)."""
  from jax.experimental.pallas import triton as plgpu  # pylint: disable=g-import-not-at-top
  [out] = plgpu.elementwise_inline_asm(
      text, args=list(args), constraints=constraints, pack=_HALF,
      result_shape_dtypes=[jax.ShapeDtypeStruct(args[-1].shape, jnp.float32)])
  return out


def ptx_regs(base: int, n: int = 4) -> list[str]:
  """PTX operand names $base .. $base+n-1."""
  return [f"${base + i}" for i in range(n)]


def _mma_asm() -> str:
  """One step of 16 K (a thread's 8 bytes) for both row groups and two activation
  columns, pack 8: $0..$7 the new accumulators (two chains of 4 float32: rows g, g+8 x
  columns 2t, 2t+1); $8.. the float16 pairs of lo0, lo1, hi0, hi1 (weights of groups
  0/1, low/high nibbles), even0, odd0, even1, odd1 (the two columns' activations), 4
  registers each; $40..$47 the accumulators in."""
  lo0, lo1, hi0, hi1 = (ptx_regs(8 + 4 * i) for i in range(4))
  e0, o0, e1, o1 = (ptx_regs(24 + 4 * i) for i in range(4))
  acc = ptx_regs(40, 8)
  lines = ["{", ".reg .u32 lane, g, t, gm;", ".reg .pred pa, ph;", ".reg .b32 be<4>, bo<4>;",
           ".reg .f32 d<8>;", "mov.u32 lane, %laneid;", "shr.u32 g, lane, 2;",
           "and.b32 t, lane, 3;", "and.b32 gm, g, 3;", "setp.eq.u32 pa, t, gm;",
           "setp.ge.u32 ph, g, 4;"]
  for i in range(4):  # B: the lane's κ activations of column half ph if t == g mod 4
    lines += [f"selp.b32 be{i}, {e1[i]}, {e0[i]}, ph;", f"selp.b32 be{i}, be{i}, 0, pa;",
              f"selp.b32 bo{i}, {o1[i]}, {o0[i]}, ph;", f"selp.b32 bo{i}, bo{i}, 0, pa;"]
  lines += mma_step_lines(((lo0, lo1, [f"be{i}" for i in range(4)]),
                            (hi0, hi1, [f"bo{i}" for i in range(4)])), acc)
  return "\n".join(lines)


def mma_step_lines(planes, acc) -> list[str]:
  """PTX of one step's 4 m16n8k16 MMAs into .f32 d0..d7 and out to $0..$7: per nibble
  plane (A registers of rows g and g+8, 4 each; B registers, 4), pairs j, j+1 of A's
  rows g / g+8 against B's pairs j, j+1, for j = 0 into chain d0..d3 and j = 2 into
  d4..d7; the low plane's MMAs start from the accumulator operands `acc` (8)."""
  chains = ("{d0,d1,d2,d3}", "{d4,d5,d6,d7}")
  lines = []
  for k, (w0, w1, b) in enumerate(planes):
    for c, j in enumerate((0, 2)):
      src = "{" + ",".join(acc[4 * c:4 * c + 4]) + "}" if k == 0 else chains[c]
      lines.append(f"{_MMA_SYNC} {chains[c]}, {{{w0[j]},{w1[j]},{w0[j + 1]},{w1[j + 1]}}}, "
                   f"{{{b[j]},{b[j + 1]}}}, {src};")
  return lines + [f"mov.f32 ${i}, d{i};" for i in range(8)] + ["}"]


_MMA_CONSTRAINTS = ",".join(["=f"] * 8 + ["r"] * 32 + ["f"] * 8)


def _extract_asm(group: int, half: int) -> str:
  """Accumulators (pack 8) -> float32: this lane's row's sum for column half `half` in
  element 0, zeros elsewhere. D[g][n] lives in lane 4g + n//2, slot n%2 (rows g+8, the
  second group, in slots 2, 3) of both chains."""
  a0, a1 = 8 + 2 * group, 9 + 2 * group
  return "\n".join([
      "{", ".reg .u32 lane, u, src, tmp;", ".reg .pred podd;", ".reg .f32 s0, s1, v0, v1;",
      "mov.u32 lane, %laneid;", "and.b32 u, lane, 3;", "and.b32 src, lane, 0xfffffffc;",
      "shr.u32 tmp, u, 1;", "add.u32 src, src, tmp;", f"add.u32 src, src, {2 * half};",
      f"add.f32 s0, ${a0}, ${a0 + 4};", f"add.f32 s1, ${a1}, ${a1 + 4};",
      "shfl.sync.idx.b32 v0, s0, src, 0x1f, 0xffffffff;",
      "shfl.sync.idx.b32 v1, s1, src, 0x1f, 0xffffffff;",
      "and.b32 tmp, u, 1;", "setp.ne.u32 podd, tmp, 0;", "selp.f32 $0, v1, v0, podd;"]
      + [f"mov.f32 ${i}, 0f00000000;" for i in range(1, 8)] + ["}"])


_EXTRACT_CONSTRAINTS = ",".join(["=f"] * 8 + ["f"] * 8)


def column_sets(m: int, npaths: int):
  """Activation columns (path, token) in MMA groups of two (the second may be None)."""
  cols = [(p, t) for t in range(m) for p in range(npaths)]
  return [tuple(cols[i:i + 2]) + (None,) * (2 - len(cols[i:i + 2]))
          for i in range(0, len(cols), 2)]


def load_weight_step(w_ref, sc_ref, it, *, it0, num_warps: int, tiled: bool):
  """Step `it` of a program's K range: per row group (2) the code tile (num_warps, 2,
  4, 2 blocks, half, 8 bytes or 2 words) and its E4M3 scale bytes (.., 1, 1); it0 is
  the program's first step (row-major weights index K from it)."""
  rows = [pl.ds(g * num_warps, num_warps) for g in range(2)]
  if tiled:  # this split's steps are the block's leading axis, a step's tile contiguous
    return (tuple(w_ref[it, r, :, :, :, :, :] for r in rows),
            tuple(sc_ref[it, r, :, :, :, :, :] for r in rows))
  kb0 = (it0 + it) * _BLOCKS
  return (tuple(w_ref[r, :, :, pl.ds(kb0, _BLOCKS), :, :] for r in rows),  # bytes or words
          tuple(sc_ref[r, :, :, pl.ds(kb0, _BLOCKS), :, :] for r in rows))


def _kernel(*refs, npaths: int, m: int, cfg: MmaGemvConfig, n_iter: int, tiled: bool,
            gpu: bool):
  x_refs = refs[:npaths]  # (1, 1, M, K/32, parity, half, 8) float16
  # Rows: (2W, 2, 4, K/32, half, 8) u8 codes or (.., half, 2) uint32 words; (.., 1, 1)
  # E4M3. Tiled: (steps of this split, 8, 2, 4, 2 blocks, half, 8 or 2); (.., 1, 1).
  w_ref, sc_ref, o_ref = refs[npaths:]
  nw = cfg.num_warps
  shape = (nw, 2, 4, _BLOCKS, _HALVES, _HALF)
  sets = column_sets(m, npaths)
  it0 = pl.program_id(1) * n_iter

  def x_plane(col, parity, kb0):
    p, t = col
    if gpu:  # stride-0 row dims: every lane reads the same κ activations
      return x_refs[p][pl.ds(0, nw, stride=0), pl.ds(0, 2, stride=0), pl.ds(t, 4, stride=0),
                       pl.ds(kb0, _BLOCKS), parity, :, :]
    return jnp.broadcast_to(x_refs[p][0, 0, t, pl.ds(kb0, _BLOCKS), parity, :, :], shape)

  def load_x(it):
    """Per column set: even and odd planes of both columns (the first again if alone)."""
    kb0 = (it0 + it) * _BLOCKS
    return tuple(tuple(x_plane(c, par, kb0) for c in (c0, c1 or c0) for par in (0, 1))
                 for c0, c1 in sets)

  def load(it):
    return load_weight_step(w_ref, sc_ref, it, it0=it0, num_warps=nw, tiled=tiled)

  def products(weights, planes, accs, it):
    if planes is None:  # loaded here, after the decode (the run-18 kernel's order)
      planes = load_x(it)
    if gpu:
      (lo0, hi0), (lo1, hi1) = weights
      return tuple(inline_asm_f32(_mma_asm(), (lo0, lo1, hi0, hi1, *xs, acc), _MMA_CONSTRAINTS)
                   for xs, acc in zip(planes, accs))
    out, i = list(accs), 0  # interpret: float32 products per column and group
    for (c0, c1), xs in zip(sets, planes):
      for xe, xo in ((xs[0], xs[1]), (xs[2], xs[3]))[:1 + (c1 is not None)]:
        for lo, hi in weights:
          out[i] = (out[i] + lo.astype(jnp.float32) * xe.astype(jnp.float32)
                    + hi.astype(jnp.float32) * xo.astype(jnp.float32))
          i += 1
    return tuple(out)

  def multiply(it, weight_step, *rest):
    codes, scale_bits = weight_step
    *queued_planes, (accs, flags) = rest
    planes = queued_planes[0] if queued_planes else None
    weights = []  # per group: (lo, hi) = Ŵ'·2^-7 in float16, exact
    new_flags = []
    for g, (c, sb) in enumerate(zip(codes, scale_bits)):
      if cfg.queue_words:
        c = common.words_to_bytes(c)
      scale = common.decode_e4m3_scale_f16(sb)
      if cfg.isolate_nan_rows:
        # A NaN/Inf block (scale code 0x7F) enters the MMA as zeros and is remembered
        # per row: the MMA multiplies every lane's weights by B's zeros too, and an IEEE
        # NaN·0 would poison the other rows of the quad.
        bad = (sb & 0x7F) == 0x7F
        scale = jnp.where(bad, jnp.float16(0), scale)
        new_flags.append(flags[g] | bad.astype(jnp.uint8))
      lo, hi = common.decode_nibbles_f16(c, gpu=gpu)
      weights.append((lo * scale, hi * scale))
    return products(weights, planes, accs, it), tuple(new_flags)

  n_acc = len(sets) if gpu else 2 * sum(c is not None for s in sets for c in s)
  zeros = (jnp.zeros(shape, jnp.float32),) * n_acc
  # isolate_nan_rows: per (row, block) of the scale tile, 1 once a NaN/Inf block was
  # seen. (The local sm_90a compile loads each step's scale bytes twice for it, in two
  # register layouts; flags reduced from the codes' shape did the same.)
  no_flags = (jnp.zeros(shape[:4] + (1, 1), jnp.uint8),) * 2 if cfg.isolate_nan_rows else ()
  streams = [(load, cfg.prefetch)]
  if cfg.prefetch_activations:
    streams.append((load_x, cfg.prefetch_activations))
  accs, flags = common.stream_queues(
      n_iter, streams, multiply, (zeros, no_flags),
      after_loads=_compat.cta_barrier if gpu and cfg.pin_loads else None)

  col_index = {c: i for i, c in enumerate(c for s in sets for c in s if c is not None)}
  for tok in range(m):
    for g in range(2):
      v = None
      for si, s in enumerate(sets):
        for half, c in enumerate(s):
          if c is None or c[1] != tok:
            continue
          part = (inline_asm_f32(_extract_asm(g, half), (accs[si],), _EXTRACT_CONSTRAINTS)
                  if gpu else accs[2 * col_index[c] + g])
          v = part if v is None else v + part
      y = jnp.sum(jnp.sum(jnp.sum(v, axis=5), axis=4), axis=3)  # (nw, 2, 4): 8·nw rows
      if cfg.isolate_nan_rows:
        bad_row = jnp.max(jnp.max(jnp.max(flags[g], axis=5), axis=4), axis=3) > 0
        y = jnp.where(bad_row, jnp.float32(jnp.nan), y)
      o_ref[pl.ds(tok, 1), pl.ds(g * nw, nw), :, :] = y[None]


def check_weight_tile(w: PackedWeight, config, name: str) -> bool:
  """Whether w is tiled (WeightLayout.TILES_64), which needs 64 rows a program."""
  tiled = w.layout is WeightLayout.TILES_64
  if tiled and config.block_n != TILE:
    raise ValueError(f"{name}: a WeightLayout.TILES_64 weight needs {TILE} rows a "
                     f"program (num_warps=4), got {config.tag()}; use num_warps=4 or "
                     f"w.to_layout(WeightLayout.ROWS)")
  return tiled


def weight_operands(w: PackedWeight, config, n_iter: int, *, words: bool):
  """The code and scale operands of a (tiled or row-major) weight with their
  BlockSpecs on the (N / block_n, split_k) grid: codes as bytes, or as 32-bit words
  where `words`, in the tile load_weight_step reads."""
  n, kb, nw = w.n, w.k // 32, config.num_warps
  if w.layout is WeightLayout.TILES_64:  # (N/64, K/64, 8, 2, 4, blocks, half, 8)
    codes = w.codes.reshape(n // TILE, kb // 2, 8, 2, 4, _BLOCKS, _HALVES, _HALF)
    scales = w.scales.reshape(n // TILE, kb // 2, 8, 2, 4, _BLOCKS, 1, 1)
  else:
    codes = w.codes.reshape(n // 8, 2, 4, kb, _HALVES, _HALF)
    scales = w.scales.reshape(n // 8, 2, 4, kb, 1, 1)
  if words:
    codes = common.bytes_to_words(codes)
  if w.layout is WeightLayout.TILES_64:  # rows r·8 + a·4 + b of the tile
    specs = [pl.BlockSpec((None, n_iter) + a.shape[2:], lambda j, s: (j, s) + (0,) * 6)
             for a in (codes, scales)]
  else:
    specs = [pl.BlockSpec((2 * nw,) + codes.shape[1:], lambda j, s: (j,) + (0,) * 5),
             pl.BlockSpec((2 * nw, 2, 4, kb, 1, 1), lambda j, s: (j,) + (0,) * 5)]
  return [codes, scales], specs


def mma_gemv(paths, w: PackedWeight, *, act_scale: jax.Array, bias=None,
             out_dtype=jnp.float32, config: MmaGemvConfig, planes: bool = False,
             interpret: bool = False) -> jax.Array:
  """s·s_w·2^7 · Σ_p paths[p] · (Ŵ'·2^-7)ᵀ (+ bias) for M <= MMA_GEMV_MAX_M tokens.

  The arguments are gemv's (gemv_gpu): float16 paths (1 or 2) in PathLayout.MMA, or in
  PathLayout.GEMV with planes=True; the activations' tensor scale; an optional float32
  bias; the tile config, checked against the shape. In interpret mode (CPU tests) the
  products are float32 FMAs instead of the PTX MMAs.

  The kernel writes float32 partials per K split; XLA sums them, applies s·s_w·2^7
  and the bias, and casts to out_dtype.

  A weight in WeightLayout.TILES_64 is read tile by tile (a program's K step is one
  contiguous 64×64 tile); it needs num_warps = 4 (64 rows a program, one tile).
  """
  paths, m, k, n, n_iter = gemv_operands(paths, w, config, planes)
  kb, nw = k // 32, config.num_warps
  tiled = check_weight_tile(w, config, "mma_gemv")
  act_scale = jnp.asarray(act_scale, jnp.float32)
  args = [p.reshape(1, 1, m, kb, 2, _HALVES, _HALF) for p in paths]
  in_specs = [pl.BlockSpec((1, 1, m, kb, 2, _HALVES, _HALF), lambda j, s: (0,) * 7)
              ] * len(paths)
  w_args, w_specs = weight_operands(w, config, n_iter, words=config.queue_words)
  args += w_args
  in_specs += w_specs
  kernel = functools.partial(_kernel, npaths=len(paths), m=m, cfg=config, n_iter=n_iter,
                             tiled=tiled, gpu=not interpret)
  out = pl.pallas_call(
      kernel, grid=(n // config.block_n, config.split_k), in_specs=in_specs,
      out_specs=pl.BlockSpec((None, m, 2 * nw, 2, 4), lambda j, s: (s, 0, j, 0, 0)),
      out_shape=jax.ShapeDtypeStruct((config.split_k, m, n // 8, 2, 4), jnp.float32),
      interpret=interpret,
      compiler_params=None if interpret else _compat.compiler_params(
          config.num_warps, config.num_stages),
      name=f"sharq_mma_gemv_{config.tag()}")(*args)
  return finish_split_k(out.reshape(config.split_k, m, n),
                        act_scale * w.scale * WEIGHT_FACTOR, bias, out_dtype)
