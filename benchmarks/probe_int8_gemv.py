"""The int8 GEMV (int8_gemv_gpu) against the float16 MMA GEMV and XLA bf16 at decode sizes.

Per big Llama shape and M: checks first — the prep kernel's PathLayout.INT8 output
equals its float16 output after Prepared.in_mma_layout (bit for bit), every int8 tile
(tiled and row-major weights) against the float32 reference, NaN/Inf weight blocks
poisoning exactly their rows, a NaN activation its token — then device times
(jax.profiler trace) in one process, weights rotated beyond the L2: XLA bf16, the MMA
GEMV's tiled default (exact mode), int8 tiles, and at the end the whole linear
(sharq_matmul: prep + GEMM) both ways. Lines go to OUT/log.txt, rows to
OUT/results.jsonl.

    python3 benchmarks/probe_int8_gemv.py --out $OUT/int8 --ms 1,2,4
    python3 benchmarks/probe_int8_gemv.py --smoke   # CPU: interpret mode, tiny shapes

--tiles replaces the int8 tiles tried (semicolon-separated MmaGemvConfig fields, e.g.
"split_k=8,prefetch=4;split_k=4,prefetch=8"); --mma_tiles adds float16 MMA GEMV tiles
(checked and timed on the tiled weight).
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

from sharq_jax.kernels.sharq_matmul import (MmaGemvConfig, WeightLayout,  # noqa: E402
                                            pack_weight_from_float, sharq_gemm,
                                            sharq_gemm_reference, sharq_matmul)
from sharq_jax.kernels.sharq_matmul import specs as mm_specs  # noqa: E402
from sharq_jax.kernels.sharq_prep import PathLayout, sharq_prep  # noqa: E402

CALLS = 24
ROTATE_BYTES = 240e6  # 4x the L2
DN = (((1,), (1,)), ((), ()))
_W = dict(queue_words=True)
TILES = [MmaGemvConfig(split_k=8, prefetch=4, **_W),
         MmaGemvConfig(split_k=4, prefetch=4, **_W),
         MmaGemvConfig(split_k=8, prefetch=2, **_W),
         MmaGemvConfig(split_k=8, prefetch=4, prefetch_activations=1, **_W),
         MmaGemvConfig(split_k=16, prefetch=4, **_W)]
SMOKE_TILES = [MmaGemvConfig(split_k=2, prefetch=2, **_W)]


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--out", default="/tmp/probe_int8_gemv")
  ap.add_argument("--ms", default="1,2,4")
  ap.add_argument("--budget_s", type=float, default=450)
  ap.add_argument("--smoke", action="store_true", help="interpret mode, tiny shapes (CPU)")
  ap.add_argument("--tiles", default="", help="int8 GEMV tiles (MmaGemvConfig fields)")
  ap.add_argument("--shapes", default="4096x14336,14336x4096", help="KxN shapes")
  ap.add_argument("--mma_tiles", default="",
                  help="float16 MMA GEMV tiles to check and time on the tiled weight too")
  args = ap.parse_args()
  rec = harness.Recorder(args.out, args.budget_s)
  interpret = args.smoke
  tiles = (harness.parse_tiles(args.tiles, MmaGemvConfig) if args.tiles
           else SMOKE_TILES if args.smoke else TILES)
  mma_tiles = harness.parse_tiles(args.mma_tiles, MmaGemvConfig)
  shapes = ([(256, 128)] if args.smoke else
            [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")])
  key = jax.random.PRNGKey(0)
  ms = [int(v) for v in args.ms.split(",")]
  ok = True
  calls = 2 if args.smoke else CALLS
  weights = {}
  for k, n in shapes:  # every shape's rotated copies, made once, outside the timings
    c16 = 1 if interpret else max(1, math.ceil(ROTATE_BYTES / (2 * n * k)))
    c4 = 1 if interpret else max(1, math.ceil(ROTATE_BYTES / (0.53125 * n * k)))
    ws = [mm_specs.heavy_weight(jax.random.fold_in(key, i), n, k) for i in range(max(c16, c4))]
    pack = jax.jit(lambda w: pack_weight_from_float(w.astype(jnp.float32)))
    rows4 = [pack(w) for w in ws[:c4]]
    w_bad = pack(ws[0].at[1, 40].set(jnp.nan).at[6, 200].set(jnp.inf)
                 .at[n - 3, k - 5].set(jnp.nan))
    weights[k, n] = (c16, c4, ws[:c16], rows4, [w.to_layout(WeightLayout.TILES_64)
                                                for w in rows4], w_bad)
  for m in ms:  # M = 1 at both shapes first
    for k, n in shapes:
      c16, c4, w16, rows4, tiled4, w_bad = weights[k, n]
      stored = {"t64": (tiled4, w_bad.to_layout(WeightLayout.TILES_64)),
                "rows": (rows4, w_bad)}
      if rec.left() < 40:
        rec.log("budget exhausted")
        break
      x = mm_specs.heavy_activations(jax.random.fold_in(key, 55 + m), m, k)
      p8 = sharq_prep(x, layout=PathLayout.INT8, interpret=interpret)
      p16 = sharq_prep(x, interpret=interpret)
      same = all(bool(jnp.array_equal(a, b, equal_nan=True))
                 for a, b in zip(p8.in_mma_layout().paths, p16.paths))
      ok &= same
      rec.log(f"[check-prep] k={k} m={m}: INT8 paths == float16 paths: {same}")
      ref = sharq_gemm_reference(p16, rows4[0])
      for cfg in tiles:
        for lay, (wk, _) in stored.items():
          err = harness.rel_err(sharq_gemm(p8, wk[0], impl="int8_gemv", config=cfg,
                                           interpret=interpret), ref)
          ok &= err < 1e-5
          rec.log(f"[check] k={k} n={n} m={m} int8_{lay} {cfg.tag()}: rel_err {err:.2e}")
      pg = sharq_prep(x, layout=PathLayout.GEMV, interpret=interpret)
      for cfg in mma_tiles:
        err = harness.rel_err(sharq_gemm(pg, tiled4[0], impl="mma_gemv", config=cfg,
                                         interpret=interpret), ref)
        ok &= err < 1e-5
        rec.log(f"[check] k={k} n={n} m={m} mma_t64 {cfg.tag()}: rel_err {err:.2e}")
      for lay, (_, wb) in stored.items():  # bad weights, default tile
        y = sharq_gemm(p8, wb, impl="int8_gemv", interpret=interpret)
        rb = sharq_gemm_reference(p16, w_bad)
        nan_rows = sorted(set(jnp.flatnonzero(jnp.isnan(y).any(axis=0)).tolist()))
        fin = ~jnp.isnan(rb)
        err = harness.rel_err(jnp.where(fin, y, 0), jnp.where(fin, rb, 0))
        good = (bool(jnp.array_equal(jnp.isnan(y), jnp.isnan(rb)))
                and nan_rows == [1, 6, n - 3] and err < 1e-5)
        ok &= good
        rec.log(f"[check-bad] k={k} n={n} m={m} int8_{lay}: NaN rows {nan_rows}, finite "
                f"rel_err {err:.2e}: {'OK' if good else 'FAIL'}")
      xn = x.at[0, 3].set(jnp.nan)
      yn = sharq_gemm(sharq_prep(xn, layout=PathLayout.INT8, interpret=interpret),
                      tiled4[0], impl="int8_gemv", interpret=interpret)
      good = bool(jnp.isnan(yn[0]).all()) and (m == 1 or not bool(jnp.isnan(yn[1:]).any()))
      ok &= good
      rec.log(f"[check-bad-x] k={k} n={n} m={m}: NaN activation poisons token 0 only: "
              f"{'OK' if good else 'FAIL'}")

      xs = [mm_specs.heavy_activations(jax.random.fold_in(key, 9000 + j + 100 * m), m, k)
            for j in range(calls)]
      p8s = [sharq_prep(x, layout=PathLayout.INT8, interpret=interpret) for x in xs]
      pgs = [sharq_prep(x, layout=PathLayout.GEMV, interpret=interpret) for x in xs]
      row = dict(k=k, n=n, m=m)
      gemm = functools.partial(sharq_gemm, out_dtype=jnp.bfloat16, interpret=interpret)
      runs = [("bf16", lambda x, w: jax.lax.dot_general(
                  x, w, DN, preferred_element_type=jnp.float32).astype(jnp.bfloat16),
               [(xs[j], w16[j % c16]) for j in range(calls)]),
              ("mma_default_t64", functools.partial(gemm, impl="mma_gemv"),
               [(pgs[j], tiled4[j % c4]) for j in range(calls)]),
              ("int8_default_t64", functools.partial(gemm, impl="int8_gemv"),
               [(p8s[j], tiled4[j % c4]) for j in range(calls)]),
              ("int8_default_rows", functools.partial(gemm, impl="int8_gemv"),
               [(p8s[j], rows4[j % c4]) for j in range(calls)])]
      if m >= 3:  # the tensor-core kernel AUTO runs from M = 5 (row-major weights)
        pms = [sharq_prep(x, interpret=interpret) for x in xs]
        runs.append(("packed", functools.partial(gemm, impl="packed"),
                     [(pms[j], rows4[j % c4]) for j in range(calls)]))
      runs += [(f"int8_{c.tag()}_t64", functools.partial(gemm, impl="int8_gemv", config=c),
                [(p8s[j], tiled4[j % c4]) for j in range(calls)]) for c in tiles]
      runs += [(f"mma_{c.tag()}_t64", functools.partial(gemm, impl="mma_gemv", config=c),
                [(pgs[j], tiled4[j % c4]) for j in range(calls)]) for c in mma_tiles]
      lin = functools.partial(sharq_matmul, interpret=interpret)
      runs += [("linear_mma_t64", functools.partial(lin, impl="mma_gemv"),
                [(xs[j], tiled4[j % c4]) for j in range(calls)]),
               ("linear_int8_t64", functools.partial(lin, impl="int8_gemv"),
                [(xs[j], tiled4[j % c4]) for j in range(calls)]),
               ("linear_packed", functools.partial(lin, impl="packed"),
                [(xs[j], rows4[j % c4]) for j in range(calls)]),
               ("prep_gemv", functools.partial(sharq_prep, layout=PathLayout.GEMV,
                                               interpret=interpret),
                [(x,) for x in xs]),
               ("prep_int8", functools.partial(sharq_prep, layout=PathLayout.INT8,
                                               interpret=interpret),
                [(x,) for x in xs])]
      for name, fn, sets in runs:
        if rec.left() < 25:
          break
        t0 = time.time()
        if interpret:
          jax.block_until_ready([fn(*a) for a in sets])
          us = math.nan
        else:
          d = harness.device_time_calls(fn, sets)
          us = d["busy_s"] * 1e6 if d["kernels"] else math.nan
        row[name + "_us"] = us
        rec.log(f"[time] k={k} n={n} m={m} {name}: {us:.1f} us device ({time.time() - t0:.0f} s)")
      rec.record(section="int8_probe", **row)
  rec.log(f"[check] ALL OK: {ok}")


if __name__ == "__main__":
  main()
