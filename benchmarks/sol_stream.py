"""Speed of light of the decode GEMVs' weight streams: loads only, device time.

Each probe kernel streams an FP4 weight's code words (N, K/8 uint32: the bytes of
PackedWeight.codes) in the tile and K order of one GEMV design, through the same
prefetch ring (common.stream_queues), and adds them into per-thread uint32 sums, so
its time is what the access pattern alone costs. Every kernel's output (the sum of each
row's words modulo 2^32) is checked against numpy. The weights are rotated over copies
beyond the 60 MB L2; XLA bf16 `dot_general` and the MMA GEMV's default run in the same
process.

    python3 benchmarks/sol_stream.py --out $OUT/sol
    python3 benchmarks/sol_stream.py --smoke   # CPU: interpret mode, tiny shapes

Patterns (StreamPattern):
  ROWS_ON_LANES  the MMA GEMV: lanes on 32 rows, warps on 16-K chunks, 32·blocks K a
                 step (the MMA GEMV's 2 blocks; 4 and 8 give longer runs of a row)
  TILES_64       the same tiles from a WeightLayout.TILES_64 weight: a program's step
                 reads one contiguous 64-row × 64-K tile (2 KB), K steps one after another
  QUAD_ROW       the fragment GEMV: a quad of lanes on 32 bytes of one row, 64 K a step
  WARP_ROW       a warp's 32 lanes on 256 bytes of one row, 512 K a step
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import functools
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import _bootstrap, harness  # noqa: E402

_bootstrap.setup()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.experimental import pallas as pl  # noqa: E402

from sharq_jax.kernels import _compat, common  # noqa: E402
from sharq_jax.kernels.sharq_matmul import pack_weight_from_float, sharq_gemm  # noqa: E402
from sharq_jax.kernels.sharq_matmul import specs as mm_specs  # noqa: E402
from sharq_jax.kernels.sharq_prep import PathLayout, sharq_prep  # noqa: E402

ROTATE_BYTES = 240e6  # 4x the L2
CALLS = 24


class StreamPattern(enum.Enum):
  """Which GEMV's tiles the probe streams in (see the module docstring)."""

  ROWS_ON_LANES = "rows_on_lanes"
  TILES_64 = "tiles_64"
  QUAD_ROW = "quad_row"
  WARP_ROW = "warp_row"


@dataclasses.dataclass(frozen=True)
class StreamProbe:
  """A probe kernel: pattern, K split, ring depth, warps (rows per program follow)."""

  pattern: StreamPattern = StreamPattern.ROWS_ON_LANES
  split_k: int = 2
  prefetch: int = 4
  num_warps: int = 4
  blocks: int = 2  # ROWS_ON_LANES: 32-blocks per step

  @property
  def rows_per_group(self) -> int:
    """Rows per program and row group (two groups per program)."""
    per_warp = {StreamPattern.ROWS_ON_LANES: 8, StreamPattern.TILES_64: 8,
                StreamPattern.QUAD_ROW: 8, StreamPattern.WARP_ROW: 1}[self.pattern]
    return per_warp * self.num_warps

  @property
  def step_words(self) -> int:
    """Code words per row and K step."""
    if self.pattern in _LANE_PATTERNS:
      return 4 * self.blocks
    return 64 if self.pattern is StreamPattern.WARP_ROW else 8

  def tag(self) -> str:
    """Short name of the probe (its kernel's name carries it)."""
    blocks = f"b{self.blocks}" if self.pattern in _LANE_PATTERNS else ""
    return f"{self.pattern.value}_s{self.split_k}p{self.prefetch}w{self.num_warps}{blocks}"


_LANE_PATTERNS = (StreamPattern.ROWS_ON_LANES, StreamPattern.TILES_64)


def stored(words: jax.Array, probe: StreamProbe) -> jax.Array:
  """The (N, K/8) words as the probe reads them from memory: TILES_64 stores each
  64-row × 64-K tile contiguously (N/64, K/64, 64, 8) (WeightLayout.TILES_64); the
  other patterns read the rows as they are."""
  if probe.pattern is not StreamPattern.TILES_64:
    return words
  n, kw = words.shape
  return words.reshape(n // 64, 64, kw // 8, 8).transpose(0, 2, 1, 3)


def _view(words: jax.Array, probe: StreamProbe) -> jax.Array:
  """The stored words as the probe's ref array."""
  nw = probe.num_warps
  if probe.pattern is StreamPattern.TILES_64:  # (N/64, K/64, 8, 2, 4, blocks, half, 2 words)
    tn, tk = words.shape[:2]
    return words.reshape(tn, tk, 8, 2, 4, 2, 2, 2)
  n, kw = words.shape
  if probe.pattern is StreamPattern.ROWS_ON_LANES:  # (N/8, 2, 4, K/32, half, 2 words)
    return words.reshape(n // 8, 2, 4, kw // 4, 2, 2)
  return words.reshape(n // nw, nw, kw)


def _kernel(w_ref, o_ref, *, probe: StreamProbe, n_iter: int):
  nw, rows = probe.num_warps, probe.rows_per_group
  it0 = pl.program_id(1) * n_iter
  lanes_on_rows = probe.pattern in _LANE_PATTERNS

  def load(it):
    step = it0 + it
    if probe.pattern is StreamPattern.TILES_64:  # the block holds this split's steps
      return tuple(w_ref[it, pl.ds(g * nw, nw), :, :, :, :, :] for g in range(2))
    if lanes_on_rows:  # probe.blocks 32-blocks per step
      b = probe.blocks
      return tuple(w_ref[pl.ds(g * nw, nw), :, :, pl.ds(b * step, b), :, :] for g in range(2))
    per_warp = rows // nw
    width = probe.step_words
    return tuple(w_ref[pl.ds(g * per_warp, per_warp), :, pl.ds(step * width, width)]
                 for g in range(2))

  def add(it, tiles, acc):
    del it
    return tuple(a + t for a, t in zip(acc, tiles))

  shape = ((nw, 2, 4, probe.blocks, 2, 2) if lanes_on_rows
           else (rows // nw, nw, probe.step_words))
  zero = jnp.zeros(shape, jnp.uint32)
  acc = common.stream_queues(n_iter, [(load, probe.prefetch)], add, (zero, zero))
  for g, a in enumerate(acc):
    if lanes_on_rows:
      o_ref[pl.ds(g * nw, nw), :, :] = jnp.sum(jnp.sum(jnp.sum(a, axis=5), axis=4), axis=3)
    else:
      o_ref[pl.ds(g * (rows // nw), rows // nw), :] = jnp.sum(a, axis=2)


@functools.partial(jax.jit, static_argnames=("probe", "interpret"))
def stream_sums(words: jax.Array, probe: StreamProbe, interpret: bool = False) -> jax.Array:
  """Per row, the sum of its code words over each K split, modulo 2^32: (split, N).
  `words` as stored(words, probe) gives them."""
  if probe.pattern is StreamPattern.TILES_64:
    if probe.num_warps != 4 or probe.blocks != 2:
      raise ValueError(f"{probe.tag()}: TILES_64 reads 64 rows and 64 K a step")
    n, kw = words.shape[0] * 64, words.shape[1] * 8
  else:
    n, kw = words.shape
  steps = kw // probe.step_words
  if n % (2 * probe.rows_per_group) or steps % probe.split_k:
    raise ValueError(f"{probe.tag()} does not tile N={n}, K={8 * kw}")
  ref = _view(words, probe)
  nw, rows = probe.num_warps, probe.rows_per_group
  if probe.pattern is StreamPattern.TILES_64:
    n_iter = steps // probe.split_k
    in_spec = pl.BlockSpec((None, n_iter) + ref.shape[2:], lambda j, s: (j, s) + (0,) * 6)
    out_shape = (probe.split_k, n // 8, 2, 4)
    out_spec = pl.BlockSpec((None, 2 * nw, 2, 4), lambda j, s: (s, j, 0, 0))
  elif probe.pattern is StreamPattern.ROWS_ON_LANES:
    in_spec = pl.BlockSpec((2 * nw,) + ref.shape[1:], lambda j, s: (j,) + (0,) * 5)
    out_shape = (probe.split_k, n // 8, 2, 4)
    out_spec = pl.BlockSpec((None, 2 * nw, 2, 4), lambda j, s: (s, j, 0, 0))
  else:
    in_spec = pl.BlockSpec((2 * rows // nw,) + ref.shape[1:], lambda j, s: (j, 0, 0))
    out_shape = (probe.split_k, n // nw, nw)
    out_spec = pl.BlockSpec((None, 2 * rows // nw, nw), lambda j, s: (s, j, 0))
  out = pl.pallas_call(
      functools.partial(_kernel, probe=probe, n_iter=steps // probe.split_k),
      grid=(n // (2 * rows), probe.split_k), in_specs=[in_spec], out_specs=out_spec,
      out_shape=jax.ShapeDtypeStruct(out_shape, jnp.uint32), interpret=interpret,
      compiler_params=None if interpret else _compat.compiler_params(nw, 1),
      name=f"sol_stream_{probe.tag()}")(ref)
  return out.reshape(probe.split_k, n)


def reference_sums(words: np.ndarray, split_k: int) -> np.ndarray:
  """numpy: (split, N) sums of each row's words per K split, modulo 2^32."""
  n, kw = words.shape
  parts = words.astype(np.uint64).reshape(n, split_k, kw // split_k).sum(axis=2)
  return (parts % (1 << 32)).astype(np.uint32).T


_LANES, _TILES, _QUAD, _WARP = StreamPattern
PROBES = [StreamProbe(_LANES, 2, 4), StreamProbe(_LANES, 8, 4), StreamProbe(_TILES, 2, 4),
          StreamProbe(_TILES, 8, 4), StreamProbe(_QUAD, 2, 4),
          StreamProbe(_QUAD, 8, 4), StreamProbe(_QUAD, 8, 8), StreamProbe(_WARP, 1, 4),
          StreamProbe(_WARP, 2, 4)]


def main():
  """Checks and times every probe at every shape, with the baselines (see the module
  docstring)."""
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--out", default="/tmp/sol_stream")
  ap.add_argument("--shapes", default="4096x14336,14336x4096")
  ap.add_argument("--budget_s", type=float, default=300)
  ap.add_argument("--probes", default="",
                  help="probes instead of PROBES: semicolon-separated StreamProbe fields, "
                  "e.g. pattern=rows_on_lanes,split_k=2,blocks=8")
  ap.add_argument("--smoke", action="store_true", help="interpret mode, tiny shapes (CPU)")
  args = ap.parse_args()
  rec = harness.Recorder(args.out, args.budget_s)
  interpret = args.smoke
  shapes = ["1024x256"] if args.smoke else args.shapes.split(",")
  probes = ([StreamProbe(p, 2, 2, 4 if p is _TILES else 2) for p in StreamPattern]
            + [StreamProbe(_LANES, 2, 2, 4, blocks=8)] if args.smoke else PROBES)
  if args.probes:
    probes = [StreamProbe(**{k: (StreamPattern(v) if k == "pattern" else int(v))
                             for k, v in (f.split("=") for f in spec.split(","))})
              for spec in args.probes.split(";")]
  key = jax.random.PRNGKey(0)
  ok = True
  for shape in shapes:
    k, n = map(int, shape.split("x"))
    copies = 1 if interpret else max(1, math.ceil(ROTATE_BYTES / (0.53125 * n * k)))
    ws = [mm_specs.heavy_weight(jax.random.fold_in(key, i), n, k) for i in range(copies)]
    pws = [pack_weight_from_float(w.astype(jnp.float32)) for w in ws]
    words = [common.bytes_to_words(p.codes) for p in pws]
    row = dict(k=k, n=n)
    runs = []
    for probe in probes:
      mine = [stored(wd, probe) for wd in words]
      try:
        got = np.asarray(stream_sums(mine[0], probe, interpret=interpret))
      except ValueError as e:
        rec.log(f"[skip] k={k} n={n} {probe.tag()}: {e}")
        continue
      good = bool(np.array_equal(got, reference_sums(np.asarray(words[0]), probe.split_k)))
      ok &= good
      rec.log(f"[check] k={k} n={n} {probe.tag()}: {'OK' if good else 'FAIL'}")
      runs.append((probe.tag(), functools.partial(stream_sums, probe=probe,
                                                  interpret=interpret),
                   [(mine[j % copies],) for j in range(CALLS)]))
    if not interpret:
      c16 = max(1, math.ceil(ROTATE_BYTES / (2 * n * k)))
      w16 = [w.astype(jnp.bfloat16) for w in ws[:c16]] + [
          mm_specs.heavy_weight(jax.random.fold_in(key, 50 + i), n, k).astype(jnp.bfloat16)
          for i in range(max(0, c16 - copies))]
      xs = [mm_specs.heavy_activations(jax.random.fold_in(key, 900 + j), 1, k)
            for j in range(CALLS)]
      dn = (((1,), (1,)), ((), ()))
      runs.append(("bf16_dot", lambda x, w: jax.lax.dot_general(
          x, w, dn, preferred_element_type=jnp.float32),
          [(xs[j], w16[j % c16]) for j in range(CALLS)]))
      prs = [sharq_prep(x, layout=PathLayout.GEMV) for x in xs]
      runs.append(("mma_gemv_default", functools.partial(sharq_gemm, impl="mma_gemv"),
                   [(prs[j], pws[j % copies]) for j in range(CALLS)]))
    for name, fn, sets in runs:
      if rec.left() < 15:
        rec.log("budget exhausted")
        break
      d = harness.device_time_calls(fn, sets) if not interpret else {"busy_s": math.nan,
                                                                      "kernels": 0}
      us = d["busy_s"] * 1e6 if d["kernels"] else math.nan
      gbs = math.nan if math.isnan(us) else 0.5 * n * k / (us * 1e-6) / 1e9
      row[name + "_us"] = us
      rec.log(f"[time] k={k} n={n} {name}: {us:.1f} us device ({gbs:.0f} GB/s of codes)")
    rec.record(section="sol_stream", **row)
  rec.log(f"[check] ALL OK: {ok}")


if __name__ == "__main__":
  main()
