"""MMA and fragment GEMVs against the CUDA-core GEMV and XLA bf16 at decode sizes.

For each big Llama shape and M: a correctness check of every MMA and fragment GEMV tile
against the float32 reference (both path modes, M and M + 1 tokens), then device times
(jax.profiler trace, harness.device_time_calls) of XLA bf16, the GEMV default, both
kernels' defaults and tiles (path mode --time_mode), in one process, weights rotated
beyond the L2. Lines go to OUT/log.txt and rows to OUT/results.jsonl.

    python3 benchmarks/probe_mma_gemv.py --out $OUT/mma --ms 1,2,4,8 --budget_s 400
    python3 benchmarks/probe_mma_gemv.py --smoke   # CPU: interpret mode, tiny shapes

--mma_tiles / --frag_tiles / --gemv_tiles replace the tiles tried at every shape
(semicolon-separated config fields, e.g. "split_k=4,prefetch=2;split_k=8,
prefetch_activations=True"; "none" tries none); the GEMV row is otherwise its default
tile. Each kernel reads activations prepared in its own layout (prep_layout). --shapes
picks shapes (e.g. 4096x14336). --light_checks checks each tile in the timed path mode
(--time_mode) at M only, and the bad input at the first M only (a deep queue's kernel
takes seconds to compile, and each check compiles one).
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import _bootstrap, harness  # noqa: E402

_bootstrap.setup()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from sharq_jax.kernels.sharq_matmul import (FRAGMENT_GEMV_MAX_M, GEMV_MAX_M,  # noqa: E402
                                            MMA_GEMV_MAX_M,
                                            FragmentGemvConfig, GemvConfig, MmaGemvConfig,
                                            WeightLayout,
                                            pack_weight_from_float, prep_layout,
                                            sharq_gemm, sharq_gemm_reference)
from sharq_jax.kernels.sharq_matmul import specs as mm_specs  # noqa: E402
from sharq_jax.kernels.sharq_prep import PathMode, sharq_prep  # noqa: E402

CALLS = 24
ROTATE_BYTES = 240e6  # 4x the L2
DN = (((1,), (1,)), ((), ()))
# Tiles tried per (K, N): the session-8 defaults (M = 1, 2, >= 3; code words) and the
# session-7 byte tiles they replaced.
_W = dict(queue_words=True)
TILES = {
    (4096, 14336): [MmaGemvConfig(split_k=2, prefetch=4, prefetch_activations=4, **_W),
                    MmaGemvConfig(split_k=8, prefetch=2, **_W),
                    MmaGemvConfig(split_k=8, prefetch=1, **_W),
                    MmaGemvConfig(split_k=2, prefetch=4, prefetch_activations=4)],
    (14336, 4096): [MmaGemvConfig(split_k=8, prefetch=4, **_W),
                    MmaGemvConfig(split_k=8, prefetch=4, prefetch_activations=1, **_W),
                    MmaGemvConfig(split_k=8, prefetch=1, **_W),
                    MmaGemvConfig(split_k=8, prefetch=2, prefetch_activations=2)],
}
SMOKE_TILES = {(256, 128): [MmaGemvConfig(split_k=2), MmaGemvConfig(split_k=1, prefetch=False),
                            MmaGemvConfig(split_k=1, prefetch=3, prefetch_activations=True)]}
# Fragment GEMV tiles per (K, N): its M = 1 defaults (session 9; run 33 swept 5 tiles, and
# split 4 without the activation queue was faster at 4096x14336: 24.7 against 26.2 us).
FRAG_TILES = {(4096, 14336): [FragmentGemvConfig(split_k=2, prefetch=4, prefetch_activations=4)],
              (14336, 4096): [FragmentGemvConfig(split_k=8, prefetch=4)]}
SMOKE_FRAG_TILES = {(256, 128): [FragmentGemvConfig(split_k=2),
                                 FragmentGemvConfig(split_k=1, prefetch=3,
                                                    prefetch_activations=2, num_warps=2)]}


MAX_M = {"mma_gemv": MMA_GEMV_MAX_M, "fragment_gemv": FRAGMENT_GEMV_MAX_M,
         "gemv": GEMV_MAX_M}


def _tiles(spec: str, cls, defaults: dict) -> dict:
  """{(K, N): tiles}: the --*_tiles spec for every shape ("none": none), else defaults."""
  if spec == "none":
    return {shape: [] for shape in defaults}
  if spec:
    return {shape: harness.parse_tiles(spec, cls) for shape in defaults}
  return defaults


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--out", default="/tmp/probe_mma_gemv")
  ap.add_argument("--ms", default="1,2,4,8")
  ap.add_argument("--budget_s", type=float, default=400)
  ap.add_argument("--smoke", action="store_true", help="interpret mode, tiny shapes (CPU)")
  ap.add_argument("--mma_tiles", default="", help="MMA GEMV tiles for every shape")
  ap.add_argument("--frag_tiles", default="", help="fragment GEMV tiles for every shape")
  ap.add_argument("--gemv_tiles", default="", help="GEMV tiles for every shape")
  ap.add_argument("--shapes", default="", help="KxN shapes, e.g. 4096x14336 (default: both)")
  ap.add_argument("--time_mode", default="exact", choices=[v.value for v in PathMode],
                  help="path mode of the timed calls: exact or fast")
  ap.add_argument("--tiled", action="store_true",
                  help="also check and time every MMA GEMV tile on the weight in "
                  "WeightLayout.TILES_64 (names end in _t64)")
  ap.add_argument("--light_checks", action="store_true",
                  help="exact mode at M only; the bad-input check at the first M only")
  args = ap.parse_args()
  rec = harness.Recorder(args.out, args.budget_s)
  interpret = args.smoke
  tiles = _tiles(args.mma_tiles, MmaGemvConfig, SMOKE_TILES if args.smoke else TILES)
  frag = _tiles(args.frag_tiles, FragmentGemvConfig,
                SMOKE_FRAG_TILES if args.smoke else FRAG_TILES)
  if args.shapes and not args.smoke:
    keep = {tuple(int(v) for v in shape.split("x")) for shape in args.shapes.split(",")}
    if keep - set(tiles):
      raise SystemExit(f"--shapes: unknown KxN {sorted(keep - set(tiles))}; "
                       f"known: {sorted(tiles)}")
    tiles = {shape: cands for shape, cands in tiles.items() if shape in keep}
  gemv_tiles = harness.parse_tiles(args.gemv_tiles, GemvConfig)
  key = jax.random.PRNGKey(0)
  ms = [int(v) for v in args.ms.split(",")]
  ok = True
  for (k, n), cands in tiles.items():
    c16 = max(1, math.ceil(ROTATE_BYTES / (2 * n * k))) if not interpret else 1
    c4 = max(1, math.ceil(ROTATE_BYTES / (0.53125 * n * k))) if not interpret else 1
    ws = [mm_specs.heavy_weight(jax.random.fold_in(key, i), n, k) for i in range(max(c16, c4))]
    pack = jax.jit(lambda w: pack_weight_from_float(w.astype(jnp.float32)))
    w4, w16 = [pack(w) for w in ws[:c4]], ws[:c16]
    # Bad input: NaN/Inf blocks in rows 1, 6 and N-3 poison those rows only (not the
    # other rows of their MMA quads).
    w_bad = pack(ws[0].at[1, 40].set(jnp.nan).at[6, 200].set(jnp.inf)
                 .at[n - 3, k - 5].set(jnp.nan))
    # The same weights stored tile by tile, made here, outside the timed calls.
    stored = {WeightLayout.ROWS: (w4, w_bad)}
    if args.tiled:
      stored[WeightLayout.TILES_64] = ([w.to_layout(WeightLayout.TILES_64) for w in w4],
                                       w_bad.to_layout(WeightLayout.TILES_64))
    for mi, m in enumerate(ms):
      if rec.left() < 30:
        rec.log("budget exhausted")
        break
      rows = WeightLayout.ROWS
      checks = ([("mma_gemv", c, lay) for c in cands for lay in stored]
                + [("fragment_gemv", c, rows) for c in frag[k, n]]
                + [("gemv", c, rows) for c in gemv_tiles])
      for impl, cfg, lay in checks:  # every tile against the reference first
        wk, wk_bad = stored[lay]
        impl_name = impl + ("" if lay is rows else "_t64")
        for mode in (PathMode(args.time_mode),) if args.light_checks else PathMode:
          for mm in (m,) if args.light_checks else (m, m + 1):
            if mm > MAX_M[impl]:
              continue
            x = mm_specs.heavy_activations(jax.random.fold_in(key, 55 + mm), mm, k)
            pr = sharq_prep(x, mode=mode, layout=prep_layout(impl, mm, cfg),
                            interpret=interpret)
            err = harness.rel_err(sharq_gemm(pr, wk[0], impl=impl, config=cfg,
                                             interpret=interpret),
                                  sharq_gemm_reference(pr, w4[0]))
            ok &= err < 1e-5
            rec.log(f"[check] k={k} n={n} m={mm} {mode.value} {impl_name} {cfg.tag()}: "
                    f"rel_err {err:.2e}")
        if args.light_checks and mi:
          continue
        pr = sharq_prep(mm_specs.heavy_activations(jax.random.fold_in(key, 77), m, k),
                        layout=prep_layout(impl, m, cfg), interpret=interpret)
        y = sharq_gemm(pr, wk_bad, impl=impl, config=cfg, interpret=interpret)
        ref = sharq_gemm_reference(pr, w_bad)
        nan_rows = sorted(set(jnp.flatnonzero(jnp.isnan(y).any(axis=0)).tolist()))
        same = bool(jnp.array_equal(jnp.isnan(y), jnp.isnan(ref)))
        finite = ~jnp.isnan(ref)
        err = harness.rel_err(jnp.where(finite, y, 0), jnp.where(finite, ref, 0))
        finite = ~jnp.isnan(y)
        err_ours = harness.rel_err(jnp.where(finite, y, 0), jnp.where(finite, ref, 0))
        # The reference's NaN rows exactly, with or without isolate_nan_rows: without
        # it the MMA GEMV relies on the tensor cores giving 0 for NaN·0 (which the H200
        # did in runs 26-30, and the PTX ISA does not promise; mma_gemv_gpu).
        good = same and nan_rows == [1, 6, n - 3] and err < 1e-5
        ok &= good
        rec.log(f"[check-bad] k={k} n={n} m={m} {impl_name} {cfg.tag()}: NaN rows {nan_rows}, "
                f"NaN pattern equal {same}, finite rel_err {err:.2e} / {err_ours:.2e}: "
                f"{'OK' if good else 'FAIL'}")
      xs = [mm_specs.heavy_activations(jax.random.fold_in(key, 9000 + j + 100 * m), m, k)
            for j in range(CALLS)]
      prs = [sharq_prep(x, mode=args.time_mode, layout=prep_layout("mma_gemv", m),
                        interpret=interpret) for x in xs]
      sets4 = [(prs[j], w4[j % c4]) for j in range(CALLS)]
      row = dict(k=k, n=n, m=m)
      runs = [("bf16", lambda x, w: jax.lax.dot_general(
          x, w, DN, preferred_element_type=jnp.float32).astype(jnp.bfloat16),
          [(xs[j], w16[j % c16]) for j in range(CALLS)])]
      if m <= 8:
        runs.append(("gemv", functools.partial(sharq_gemm, impl="gemv", out_dtype=jnp.bfloat16,
                                               interpret=interpret), sets4))
      runs.append(("mma_default", functools.partial(
          sharq_gemm, impl="mma_gemv", out_dtype=jnp.bfloat16, interpret=interpret), sets4))
      runs += [(f"mma_{c.tag()}", functools.partial(
          sharq_gemm, impl="mma_gemv", config=c, out_dtype=jnp.bfloat16,
          interpret=interpret), sets4) for c in cands]
      if args.tiled:
        sets_t = [(prs[j], stored[WeightLayout.TILES_64][0][j % c4]) for j in range(CALLS)]
        runs.append(("mma_default_t64", functools.partial(
            sharq_gemm, impl="mma_gemv", out_dtype=jnp.bfloat16, interpret=interpret),
            sets_t))
        runs += [(f"mma_{c.tag()}_t64", functools.partial(
            sharq_gemm, impl="mma_gemv", config=c, out_dtype=jnp.bfloat16,
            interpret=interpret), sets_t) for c in cands]
      if m <= FRAGMENT_GEMV_MAX_M:
        prs64 = [sharq_prep(x, mode=args.time_mode, layout=prep_layout("fragment_gemv", m),
                            interpret=interpret) for x in xs]
        sets64 = [(prs64[j], w4[j % c4]) for j in range(CALLS)]
        runs.append(("frag_default", functools.partial(
            sharq_gemm, impl="fragment_gemv", out_dtype=jnp.bfloat16, interpret=interpret),
            sets64))
        runs += [(f"frag_{c.tag()}", functools.partial(
            sharq_gemm, impl="fragment_gemv", config=c, out_dtype=jnp.bfloat16,
            interpret=interpret), sets64) for c in frag[k, n]]
      runs += [(f"gemv_{c.tag()}", functools.partial(
          sharq_gemm, impl="gemv", config=c, out_dtype=jnp.bfloat16,
          interpret=interpret), sets4) for c in gemv_tiles]
      for name, fn, sets in runs:
        if rec.left() < 20:
          break
        t0 = time.time()
        d = harness.device_time_calls(fn, sets)
        us = d["busy_s"] * 1e6 if d["kernels"] else math.nan
        row[name + "_us"] = us
        rec.log(f"[time] k={k} n={n} m={m} {name}: {us:.1f} us device "
                f"({time.time() - t0:.0f} s)")
      rec.record(section="probe", **row)
  rec.log(f"[check] ALL OK: {ok}")


if __name__ == "__main__":
  main()
