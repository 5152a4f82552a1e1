"""Decode-sized SharQ linears (M <= 16) on the H200: GEMV vs tensor-core kernel vs XLA.

Usage (on the device; BENCHMARKS.md gives the exact command of each table):
  PYTHONUNBUFFERED=1 python3 benchmarks/bench_decode.py --out $OUT [--budget_s 420]
      [--sections check,sweep,linear] [--ms 1,4,8,16] [--timer wall|device] [--smoke]

Sections:
  check   the prep bit for bit against the NumPy contract, and the GEMV and the
          tensor-core (packed) kernels against the float32 XLA reference, at the
          Llama-3.1-8B shapes, fresh heavy-tailed data, both modes;
  sweep   GEMV tiles at the --sweep_ms on the two big shapes, on paths prepared in the
          GEMV's layout (wall timer: coordinate descent from the default; device timer:
          the gemv_candidates list); the best tile per (shape, M) is used below
          wherever AUTO runs the GEMV (since session 7 only the M = 1 fallback for
          weights the MMA GEMV's 64x64 tiles do not divide);
  linear  per shape and M: XLA bf16 jnp.dot, fp8 dot, jax.nn.scaled_dot_general NVFP4,
          the whole SharQ linear (prep + GEMM, exact and fast), the GEMM alone and the
          prep alone. Every timing: R = 24 calls in one jit program with distinct
          activations and weight copies cycled beyond the 60 MB L2.
Timers: `wall` (net time per call: harness.time_calls_net, the program's fixed launch
cost removed; the log also has the raw time) or `device` (the kernels' summed device
time per call from a profiler trace, harness.device_time_calls; the log also has the
in-program span with the gaps between kernels, and each kernel's time). At M <= 16 the
host's cost of dispatching a program is as large as the kernels, which makes wall
times scatter (BENCHMARKS.md, session 4); the device timer does not see it.
Writes $OUT/log.txt, $OUT/results.jsonl and $OUT/decode.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
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

from sharq_jax.kernels.sharq_matmul import (GEMV_MAX_M, MMA_GEMV_MAX_M,  # noqa: E402
                                            GemmImpl, GemvConfig,
                                            default_gemv_config, pack_weight_from_float,
                                            prep_layout, resolve_impl, sharq_gemm,
                                            sharq_gemm_reference,
                                            sharq_matmul)
from sharq_jax.kernels.sharq_matmul import specs as mm_specs  # noqa: E402
from sharq_jax.kernels.sharq_prep import (PathLayout, PathMode, default_config,  # noqa: E402
                                          sharq_prep)
from sharq_jax.kernels.sharq_prep.reference import sharq_prep_numpy  # noqa: E402


class Timer(enum.Enum):
  """What a timing measures."""

  WALL = "wall"  # host clock over an R-call program, minus a null program's (net)
  DEVICE = "device"  # kernel durations from a profiler trace (busy; span logged)


@dataclasses.dataclass(frozen=True)
class Timing:
  """Seconds per call: `main` goes in the table, `aside` in the log beside it."""

  main: float
  aside: float
  kernels: dict  # kernel name -> µs per call (device timer only)
  names: tuple = ("net", "raw")  # what main and aside are


def measure(timer: Timer, fn, sets) -> Timing:
  """Times fn over the argument sets with the chosen timer."""
  if timer is Timer.DEVICE:
    d = harness.device_time_calls(fn, sets)
    if d["kernels"]:
      return Timing(d["busy_s"], d["span_s"], d["kernels"], ("busy", "span"))
    # No device process in the trace (the CPU smoke test): the wall timer instead.
  raw, net = harness.time_calls_net(fn, sets)
  return Timing(net, raw, {})


SHAPES = list(mm_specs.LLAMA31_8B_SHAPES)
BIG = [(4096, 14336), (14336, 4096)]
ROTATE_BYTES = 240e6  # 4x the L2
CALLS = 24
DN = (((1,), (1,)), ((), ()))


@dataclasses.dataclass
class Weights:
  """bf16 and packed copies of one (N, K) weight shape, enough to defeat the L2."""

  bf16: list
  packed: list

  @staticmethod
  def make(key, k: int, n: int) -> "Weights":
    """Heavy-tailed random copies: > ROTATE_BYTES of each form, so calls miss the L2."""
    c16 = max(1, math.ceil(ROTATE_BYTES / (2 * n * k)))
    c4 = max(1, math.ceil(ROTATE_BYTES / (0.53125 * n * k)))
    ws = [mm_specs.heavy_weight(jax.random.fold_in(key, i), n, k) for i in range(max(c16, c4))]
    pack = jax.jit(lambda w: pack_weight_from_float(w.astype(jnp.float32)))
    return Weights(bf16=ws[:c16], packed=[pack(w) for w in ws[:c4]])


def sec_check(rec, key, interpret: bool, ms=(1, 3, 8, 16)):
  """Prep (bit for bit against the NumPy contract; the amax in the kernel and by XLA),
  then GEMV (M <= 8) and packed (M = 16) against the float32 reference."""
  ok = True
  for k in sorted({kk for kk, _ in SHAPES}):
    for m in ms:
      x = mm_specs.heavy_activations(jax.random.fold_in(key, 10 * k + m), m, k)
      if m >= 3:  # bad input: NaN and Inf poison their own blocks, not the scale
        x = x.at[1, 5].set(jnp.nan).at[2, k - 3].set(jnp.inf)
      cfg0 = default_config(m, k)
      variants = [(cfg0, PathLayout.MMA), (cfg0, PathLayout.GEMV)]
      if m <= cfg0.block_m:  # the amax in the kernel and by XLA, whichever is not default
        variants.append((dataclasses.replace(cfg0, in_kernel_amax=not cfg0.in_kernel_amax),
                         PathLayout.MMA))
      for mode, (cfg, layout) in [(mode, v) for mode in PathMode for v in variants]:
        pr = sharq_prep(x, mode=mode, config=cfg, layout=layout, interpret=interpret)
        want, s = sharq_prep_numpy(x, mode=mode)
        got = pr.in_mma_layout().paths
        bad = sum(harness.count_neq(a, b) for a, b in zip(got, want))
        s_ok = float(pr.scale) == float(s)
        ok &= bad == 0 and s_ok
        rec.log(f"[check] prep k={k} m={m} {mode.value} in-kernel amax "
                f"{cfg.in_kernel_amax} {layout.value}: mismatches {bad}, scale equal {s_ok}")
        rec.record(section="check", what="prep", k=k, m=m, mode=mode.value,
                   in_kernel_amax=cfg.in_kernel_amax, layout=layout.value,
                   mismatches=bad, scale_equal=s_ok)
  for i, (k, n) in enumerate(SHAPES):
    pw = pack_weight_from_float(mm_specs.heavy_weight(jax.random.fold_in(key, i), n, k)
                                .astype(jnp.float32))
    for m in ms:
      x = mm_specs.heavy_activations(jax.random.fold_in(key, 100 * i + m), m, k)
      for mode in PathMode:
        pr = sharq_prep(x, mode=mode, interpret=interpret)
        ref = sharq_gemm_reference(pr, pw)
        impls = ([GemmImpl.PACKED] + ([GemmImpl.GEMV] if m <= GEMV_MAX_M else [])
                 + ([GemmImpl.MMA_GEMV] if m <= MMA_GEMV_MAX_M else []))
        for impl in impls:
          e = harness.rel_err(sharq_gemm(pr, pw, impl=impl, interpret=interpret), ref)
          ok &= e < 1e-5
          rec.log(f"[check] k={k} n={n} m={m} {mode.value} {impl.value}: rel_err {e:.2e}")
          rec.record(section="check", k=k, n=n, m=m, mode=mode.value, impl=impl.value,
                     rel_err=e)
  rec.log(f"[check] ALL OK: {ok}")


GEMV_AXES = (("block_n", (8, 16, 32, 64)), ("block_k", (64, 128, 256, 512)),
             ("num_warps", (1, 2, 4, 8)), ("split_k", (1, 2, 4, 8, 16)),
             ("num_stages", (2, 3, 4, 5)), ("row_groups", (1, 2, 4)))


def gemv_candidates(m: int, n: int, k: int) -> list:
  """The tiles the device-timer sweep tries: the default and tiles with row groups
  (fewer activation conversions per weight), split or not, some with the prefetch."""
  del m
  base = default_gemv_config(1, n, k)
  cands = [base, dataclasses.replace(base, row_groups=1),
           dataclasses.replace(base, prefetch=0 if base.prefetch else 1)]
  for bn, bk, split, warps, groups in (
      (32, 128, 16, 4, 2), (32, 128, 16, 4, 4), (64, 128, 16, 4, 4), (64, 128, 8, 4, 4),
      (64, 128, 16, 4, 8), (32, 128, 8, 4, 2), (16, 256, 4, 2, 2), (32, 256, 4, 4, 2),
      (16, 256, 8, 2, 2), (32, 128, 4, 4, 2), (32, 128, 1, 4, 2), (64, 128, 1, 4, 4)):
    cands.append(GemvConfig(bn, bk, split, warps, row_groups=groups))
  cands += [GemvConfig(32, 128, 16, 4, prefetch=True, row_groups=2),
            GemvConfig(32, 128, 8, 4, prefetch=True, row_groups=2)]
  return [c for c in dict.fromkeys(cands) if n % c.block_n == 0
          and k % (c.split_k * c.block_k) == 0]


def sec_sweep(rec, key, weights, ms, interpret: bool, timer: Timer = Timer.WALL):
  """GEMV tiles: coordinate descent (wall timer) or the gemv_candidates list (device
  timer); returns {(k, n, m): best config}."""
  best = {}
  for (k, n) in BIG:
    w = weights[(k, n)]
    for m in ms:
      xs = [mm_specs.heavy_activations(jax.random.fold_in(key, 7000 + j), m, k)
            for j in range(CALLS)]
      prs = [sharq_prep(x, layout=PathLayout.GEMV, interpret=interpret) for x in xs]
      sets = [(prs[j], w.packed[j % len(w.packed)]) for j in range(CALLS)]
      cfg = default_gemv_config(m, n, k)
      seen, label = {}, {}
      ref = sharq_gemm_reference(prs[0], w.packed[0])

      def timed(c):
        if c not in seen:
          try:
            c.check(m, n, k)
            err = harness.rel_err(sharq_gemm(prs[0], w.packed[0], impl="gemv", config=c,
                                             interpret=interpret), ref)
            if not err < 1e-5:  # every tile that can win is checked at this shape
              raise ValueError(f"rel_err {err:.2e} against the reference")
            t = measure(timer, functools.partial(
                sharq_gemm, impl="gemv", config=c, out_dtype=jnp.bfloat16,
                interpret=interpret), sets)
            seen[c], label[c] = t.main, t.names[0]
          except Exception as ex:  # pylint: disable=broad-except
            rec.log(f"[sweep] k={k} n={n} m={m} {c}: {type(ex).__name__} {str(ex)[:200]}")
            seen[c] = math.inf
          if seen[c] < math.inf:
            rec.log(f"[sweep] k={k} n={n} m={m} bn={c.block_n} bk={c.block_k} "
                    f"split={c.split_k} warps={c.num_warps} stages={c.num_stages}: "
                    f"prefetch={c.prefetch} groups={c.row_groups}: {seen[c]*1e6:.1f} us "
                    f"({label[c]}), "
                    f"{w.packed[0].nbytes()/seen[c]/1e12:.2f} TB/s")
            rec.record(section="sweep", k=k, n=n, m=m, cfg=str(c), us=seen[c] * 1e6,
                       timer=label[c])
        return seen[c]

      if timer is Timer.DEVICE:
        for c in gemv_candidates(m, n, k):
          if rec.left() < 60:
            break
          timed(c)
        finite = {c: t for c, t in seen.items() if t < math.inf}
        cfg = min(finite, key=finite.get) if finite else cfg  # none timed: the default
      for axis, values in GEMV_AXES if timer is Timer.WALL else ():
        if rec.left() < 60:  # each axis varied around the best so far
          break
        cfg = min([cfg] + [dataclasses.replace(cfg, **{axis: v}) for v in values], key=timed)
      best[(k, n, m)] = cfg
      rec.log(f"[sweep] best k={k} n={n} m={m}: {cfg} {seen[cfg]*1e6:.1f} us")
  return best


def gemv_config_for(best, m, n, k):
  """The swept tile of the nearest swept M for this shape, else the default."""
  cands = [(abs(mm - m), c) for (kk, nn, mm), c in best.items() if (kk, nn) == (k, n)]
  for _, c in sorted(cands, key=lambda t: t[0]):
    try:
      c.check(m, n, k)
      return c
    except ValueError:
      pass
  return default_gemv_config(m, n, k)


def sec_linear(rec, key, weights, ms, best, interpret: bool, timer: Timer = Timer.WALL):
  """Times the baselines, the whole SharQ linear, its GEMM and its prep per shape and M."""
  rows = []
  sdg = jax.nn.get_scaled_dot_general_config("nvfp4") if not interpret else None
  for (k, n) in SHAPES:
    w = weights[(k, n)]
    for m in ms:
      if rec.left() < 40:
        rec.log("[linear] budget exhausted")
        return rows
      xs = [mm_specs.heavy_activations(jax.random.fold_in(key, 9000 + j), m, k)
            for j in range(CALLS)]
      s16 = [(xs[j], w.bf16[j % len(w.bf16)]) for j in range(CALLS)]
      s4 = [(xs[j], w.packed[j % len(w.packed)]) for j in range(CALLS)]
      impl = resolve_impl(GemmImpl.AUTO, m, n, k)
      cfg = gemv_config_for(best, m, n, k) if impl is GemmImpl.GEMV else None
      row = dict(section="linear", k=k, n=n, m=m, impl=impl.value, cfg=str(cfg),
                 packed_bytes=w.packed[0].nbytes(), bf16_bytes=2 * n * k)
      runs = [("bf16", lambda x, ww: jnp.dot(x, ww.T), s16)]
      if not interpret:
        runs.append(("fp8", lambda x, ww: jax.lax.dot_general(
            x.astype(jnp.float8_e4m3fn), ww.astype(jnp.float8_e4m3fn), DN,
            preferred_element_type=jnp.bfloat16), s16))
        if m in (1, 16):
          runs.append(("nvfp4_sdg", lambda x, ww: jax.nn.scaled_dot_general(
              x, ww, DN, preferred_element_type=jnp.bfloat16, configs=[sdg, sdg]), s16))
      for mode in PathMode:  # the int8 GEMV is exact mode's: fast mode runs AUTO's pick
        mode_impl = (resolve_impl(GemmImpl.AUTO, m, n, k, mode)
                     if impl is GemmImpl.INT8_GEMV else impl)
        row[f"impl_{mode.value}"] = mode_impl.value
        runs.append((f"sharq_{mode.value}", functools.partial(
            sharq_matmul, mode=mode, impl=mode_impl, gemm_config=cfg, interpret=interpret),
            s4))
      prs = [sharq_prep(x, interpret=interpret) for x in xs]
      # The GEMM alone, on paths already in the layout it reads (no conversion timed).
      own = prep_layout(impl, m, cfg, n, k)
      prs_own = prs if own is PathLayout.MMA else [
          sharq_prep(x, layout=own, interpret=interpret) for x in xs]
      runs.append(("gemm", functools.partial(sharq_gemm, impl=impl, config=cfg,
                                             out_dtype=jnp.bfloat16, interpret=interpret),
                   [(prs_own[j], s4[j][1]) for j in range(CALLS)]))
      # The other small-M kernels on the same calls: the tensor-core PACKED kernel, and
      # the two GEMVs where AUTO did not pick them (each on paths in its own layout).
      if impl is not GemmImpl.PACKED:
        runs.append(("gemm_packed", functools.partial(
            sharq_gemm, impl=GemmImpl.PACKED, out_dtype=jnp.bfloat16, interpret=interpret),
            [(prs[j], s4[j][1]) for j in range(CALLS)]))
      prs_planes = prs_own if own is PathLayout.GEMV else (
          [sharq_prep(x, layout=PathLayout.GEMV, interpret=interpret) for x in xs]
          if m <= MMA_GEMV_MAX_M else [])
      for other, name, limit in ((GemmImpl.GEMV, "gemm_gemv", GEMV_MAX_M),
                                 (GemmImpl.MMA_GEMV, "gemm_mma_gemv", MMA_GEMV_MAX_M)):
        if impl is not other and m <= limit:
          runs.append((name, functools.partial(sharq_gemm, impl=other, out_dtype=jnp.bfloat16,
                                               interpret=interpret),
                       [(prs_planes[j], s4[j][1]) for j in range(CALLS)]))
      runs.append(("prep", lambda x: sharq_prep(x, interpret=interpret).paths,
                   [(x,) for x in xs]))
      # The kernel alone (scale given): the rest of "prep" is the XLA amax pass.
      runs.append(("prep_given_scale", lambda x, s: sharq_prep(
          x, scale=s, interpret=interpret).paths,
          [(x, pr.scale) for x, pr in zip(xs, prs)]))
      pcfg = default_config(m, k)
      # The default tile with the amax in the kernel and by XLA: "prep" is the default's
      # placement, so only the other one is timed (copied into both columns below).
      amax_rows = {True: "prep_kernel_amax", False: "prep_xla_amax"}
      if m <= pcfg.block_m:
        other = not pcfg.in_kernel_amax
        runs.append((amax_rows[other], lambda x, c=dataclasses.replace(
            pcfg, in_kernel_amax=other): sharq_prep(x, config=c, interpret=interpret).paths,
            [(x,) for x in xs]))
      for name, fn, sets in runs:
        try:
          t = measure(timer, fn, sets)
        except Exception as ex:  # pylint: disable=broad-except
          rec.log(f"[linear] k={k} n={n} m={m} {name}: {type(ex).__name__} {str(ex)[:300]}")
          continue
        main, aside = t.names
        row[name + "_us"], row[f"{name}_{aside}_us"] = t.main * 1e6, t.aside * 1e6
        row["timer"] = main
        kern = "; ".join(f"{kn} {v:.1f}" for kn, v in sorted(t.kernels.items(),
                                                              key=lambda kv: -kv[1]))
        rec.log(f"[linear] k={k} n={n} m={m} {name:12s} {main} {t.main*1e6:8.1f} us "
                f"({aside} {t.aside*1e6:8.1f})" + (f" [{kern}]" if kern else ""))
        if t.kernels:
          row[name + "_kernels_us"] = t.kernels
      if m <= pcfg.block_m:  # the default placement's column is the "prep" row
        for suffix in ("_us", "_raw_us", "_span_us"):
          if "prep" + suffix in row:
            row[amax_rows[pcfg.in_kernel_amax] + suffix] = row["prep" + suffix]
      for name in ("sharq_exact", "sharq_fast", "gemm", "gemm_packed", "gemm_gemv",
                   "gemm_mma_gemv"):
        if row.get(name + "_us") and row.get("bf16_us"):
          row[name + "_vs_bf16"] = row["bf16_us"] / row[name + "_us"]
      if row.get("gemm_us"):
        row["gemm_tbs"] = row["packed_bytes"] / row["gemm_us"] / 1e6
      rec.record(**row)
      rows.append(row)
  return rows


def table(rows) -> str:
  """Markdown table of the linear section (µs per call: net wall or device busy)."""
  head = ("| K×N | M | bf16 | fp8 | nvfp4 sdg | SharQ exact | SharQ fast | GEMM | GEMM "
          "(tensor-core) | GEMV | MMA GEMV | prep | prep kernel alone | prep, amax in kernel | "
          "prep, amax by XLA | exact vs bf16 | GEMM weight TB/s |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
  f = lambda v, d=1: "—" if v is None else f"{v:.{d}f}"  # noqa: E731
  lines = []
  for r in rows:
    lines.append(
        f"| {r['k']}×{r['n']} | {r['m']} | {f(r.get('bf16_us'))} | {f(r.get('fp8_us'))} | "
        f"{f(r.get('nvfp4_sdg_us'))} | {f(r.get('sharq_exact_us'))} | "
        f"{f(r.get('sharq_fast_us'))} | {f(r.get('gemm_us'))} ({r['impl']}) | "
        f"{f(r.get('gemm_packed_us'))} | {f(r.get('gemm_gemv_us'))} | "
        f"{f(r.get('gemm_mma_gemv_us'))} | {f(r.get('prep_us'))} | "
        f"{f(r.get('prep_given_scale_us'))} | "
        f"{f(r.get('prep_kernel_amax_us'))} | {f(r.get('prep_xla_amax_us'))} | "
        f"{f(r.get('sharq_exact_vs_bf16'), 2)}× | {f(r.get('gemm_tbs'), 2)} |")
  return head + "\n".join(lines) + "\n"


def main():
  """Parses the flags, runs the chosen sections, writes the table."""
  ap = argparse.ArgumentParser()
  ap.add_argument("--out", default=os.environ.get("OUT", "bench_decode_out"))
  ap.add_argument("--budget_s", type=float, default=420)
  ap.add_argument("--sections", default="check,sweep,linear")
  ap.add_argument("--ms", default="1,4,8,16")
  ap.add_argument("--sweep_ms", default="1,8")
  ap.add_argument("--check_ms", default="1,3,8,16",
                  help="token counts of the check section (it took 160 s at the default)")
  ap.add_argument("--seed", type=int, default=None, help="PRNG seed (default: the clock)")
  ap.add_argument("--timer", default="wall", choices=[t.value for t in Timer],
                  help="wall: host clock, net of a null program; device: kernel time "
                  "from a profiler trace (busy; the in-program span in the log)")
  ap.add_argument("--shapes", default="",
                  help="KxN weight shapes of every section, e.g. "
                  "4096x14336,14336x4096 (default: the four Llama-3.1-8B shapes)")
  ap.add_argument("--smoke", action="store_true",
                  help="CPU smoke test: tiny shapes, kernels in interpret mode")
  args = ap.parse_args()
  global SHAPES, BIG, ROTATE_BYTES, CALLS
  if args.smoke:
    # One call per timed program: no L2 to defeat on the CPU, and every call is more
    # interpreted kernels to compile (the calls are independent: same code path).
    SHAPES, BIG, ROTATE_BYTES, CALLS = [(256, 64)], [(256, 64)], 1e4, 1
    harness.WARMUP_SECONDS = 0.0  # no GPU clock to ramp up
  if args.shapes and not args.smoke:
    SHAPES = [tuple(int(v) for v in shape.split("x")) for shape in args.shapes.split(",")]
    BIG = [shape for shape in BIG if shape in SHAPES]
  rec = harness.Recorder(args.out, args.budget_s)
  rec.log(f"[env] jax {jax.__version__} devices {jax.devices()} "
          f"date {time.strftime('%Y-%m-%d %H:%M:%S')} argv {sys.argv[1:]}")
  rec.record(section="env", jax=jax.__version__, device=str(jax.devices()[0].device_kind),
             argv=sys.argv[1:])
  seed = args.seed if args.seed is not None else int(time.time()) & 0xFFFF
  rec.record(section="env", seed=seed, commit=os.environ.get("GIT_COMMIT", "?"))
  rec.log(f"[env] seed {seed} commit {os.environ.get('GIT_COMMIT', '?')}")
  key = jax.random.PRNGKey(seed)
  secs = args.sections.split(",")
  timer = Timer(args.timer)
  ms = [int(v) for v in args.ms.split(",")]
  if "check" in secs:
    sec_check(rec, jax.random.fold_in(key, 1), args.smoke,
              [int(v) for v in args.check_ms.split(",")])
  weights = {}
  if "sweep" in secs or "linear" in secs:
    for i, (k, n) in enumerate(SHAPES):
      weights[(k, n)] = Weights.make(jax.random.fold_in(key, 50 + i), k, n)
  best = {}
  if "sweep" in secs:
    best = sec_sweep(rec, jax.random.fold_in(key, 2), weights,
                     [int(v) for v in args.sweep_ms.split(",")], args.smoke, timer)
  if "linear" in secs:
    rows = sec_linear(rec, jax.random.fold_in(key, 3), weights, ms, best, args.smoke, timer)
    md = table(rows)
    with open(os.path.join(args.out, "decode.md"), "w") as f:
      f.write(md)
    rec.log(md)
  rec.log(f"[main] done, {rec.left():.0f} s of budget left")


if __name__ == "__main__":
  main()
