"""SharQ linear layers on the H200: correctness at benchmark shapes, then timings.

Usage (on the device; see BENCHMARKS.md for the exact command of each table):
  PYTHONUNBUFFERED=1 python3 benchmarks/bench_linear.py --out $OUT [--budget_s 540]
      [--sections ceilings,check,sweep,linear,prep,decoder] [--quick]

Every timing: fresh heavy-tailed random data (Student-t activations with per-channel
log-normal scales, Student-t weights), never zeros; R independent calls inside one jit
program (distinct activations, weights cycled through enough copies that each call
streams its weight from HBM, not from the 60 MB L2); warm-up runs (at least 2 and at least
harness.WARMUP_SECONDS of GPU time), then the median of several timed runs with
block_until_ready, divided by R.

Writes $OUT/results.jsonl (one record per measurement) and $OUT/log.txt, and prints a
summary table at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bootstrap  # noqa: E402
import harness  # noqa: E402

_bootstrap.setup()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from sharq_jax import linear, methods  # noqa: E402
from sharq_jax.kernels.sharq_matmul import (DenseGemmConfig, GemmImpl,  # noqa: E402
                                            default_dense_config,
                                            default_packed_config, expand_weight,
                                            expand_weight_pallas,
                                            WeightLayout, pack_weight, prep_layout,
                                            resolve_impl,
                                            sharq_gemm,
                                            sharq_gemm_reference, sharq_matmul)
from sharq_jax.kernels.sharq_prep import (PathMode, PrepConfig, default_config,  # noqa: E402
                                          sharq_prep)
from sharq_jax.kernels.sharq_prep.reference import sharq_prep_numpy  # noqa: E402
from sharq_jax.kernels.sharq_matmul import specs as mm_specs  # noqa: E402
from sharq_jax.kernels.sharq_prep import specs as prep_specs  # noqa: E402

# Llama-3.1-8B linear shapes (K = in_features, N = out_features), shared specs.
SHAPES = list(mm_specs.LLAMA31_8B_SHAPES)
MS = list(mm_specs.BENCH_MS)
BIG_SHAPES = [(4096, 14336), (14336, 4096)]  # decode targets; swept
PREP_SWEEP = [(16, 4096), (16, 14336), (4096, 4096), (4096, 14336)]
CHECK_PREP = list(prep_specs.DEVICE_CHECK_PREP)  # (M, K)
CHECK_MS = (1, 16, 300)
PREP_KS, PREP_MS = (4096, 14336), (16, 4096, 16384)
CEIL_N, CEIL_MM = 1 << 29, 8192  # 1 GiB bf16 copy; 8192^3 bf16 GEMM
DENSE_M = 4096
L2_BYTES = 60e6
ROTATE_BYTES = 240e6  # weights cycled per timing run: 4x the L2
# --weight_layout: the layout the MMA GEMV's weights are stored in (the other kernels
# always get WeightLayout.ROWS copies, made outside the timed calls).
GEMV_WEIGHT_LAYOUT = WeightLayout.ROWS


def stored_for(impl, pws):
  """The packed weights as the run's kernel `impl` reads them (--weight_layout applies
  to the MMA GEMV; converted here, outside the timed calls)."""
  if impl in (GemmImpl.MMA_GEMV, GemmImpl.INT8_GEMV):
    return [p.to_layout(GEMV_WEIGHT_LAYOUT) for p in pws]
  return pws


class Bench(harness.Recorder):
  """Logging, budget, timing state and random keys of one run."""

  def __init__(self, out_dir: str, budget_s: float):
    super().__init__(out_dir, budget_s)
    self.key = jax.random.PRNGKey(int(time.time()) & 0xFFFF)

  def next_key(self):
    self.key, k = jax.random.split(self.key)
    return k


heavy_x = mm_specs.heavy_activations
heavy_w = mm_specs.heavy_weight


time_calls = harness.time_calls


def n_calls(m):
  return 24 if m <= 64 else (8 if m <= 1024 else (4 if m <= 4096 else 2))


rel_err = harness.rel_err
count_neq = harness.count_neq


# ------------------------------------------------------------------------------------
# Ceilings
# ------------------------------------------------------------------------------------

def seconds_per_call(fn, sets, **kw) -> tuple[float, str]:
  """(seconds per call, "device" or "wall"): the kernels' device time from a profiler
  trace with --linear_timer device where a device is traced, else the wall clock
  (time_calls, which takes kw). The ceilings, the linear rows and the prep section
  all use it, so that their ratios compare like with like (the wall clock adds the
  host's dispatch)."""
  if LINEAR_DEVICE_TIMER:
    busy = harness.device_time_calls(fn, sets)["busy_s"]
    if busy:
      return busy, "device"
  return time_calls(fn, sets, **kw), "wall"


def sec_ceilings(b: Bench):
  n = CEIL_N
  x = jax.random.normal(b.next_key(), (n,), jnp.bfloat16)
  t, timer = seconds_per_call(lambda v: v + jnp.bfloat16(1), [(x,)], iters=9)
  bw_copy = 2 * n * 2 / t
  t, _ = seconds_per_call(lambda v: jnp.max(v), [(x,)], iters=9)
  bw_read = n * 2 / t
  del x
  a = jax.random.normal(b.next_key(), (CEIL_MM, CEIL_MM), jnp.bfloat16)
  c = jax.random.normal(b.next_key(), (CEIL_MM, CEIL_MM), jnp.bfloat16)
  t, _ = seconds_per_call(lambda p, q: jnp.dot(p, q), [(a, c)], iters=7)
  tf = 2 * CEIL_MM**3 / t
  b.ceil = dict(hbm_copy=bw_copy, hbm_read=bw_read, bf16_flops=tf, timer=timer)
  b.log(f"[ceilings] ({timer}) HBM copy (read+write) {bw_copy/1e12:.2f} TB/s, HBM read "
        f"{bw_read/1e12:.2f} TB/s, bf16 GEMM 8192^3 {tf/1e12:.0f} TFLOP/s")
  b.record(section="ceilings", **b.ceil)


# ------------------------------------------------------------------------------------
# Correctness at benchmark shapes (fresh heavy-tailed data)
# ------------------------------------------------------------------------------------

def sec_check(b: Bench, sweep_cfgs):
  ok_all = True
  for (m, k) in CHECK_PREP:
    x = heavy_x(b.next_key(), m, k)
    x = x.at[3, 17].set(jnp.nan).at[5, 100].set(jnp.inf)
    g = (1.0 + 0.5 * jax.random.normal(b.next_key(), (k,))).astype(jnp.bfloat16)
    for gamma in (None, g):
      for mode in PathMode:
        pr = sharq_prep(x, gamma=gamma, mode=mode)
        ref, s_ref = sharq_prep_numpy(x, gamma=gamma, rstd=pr.rstd, mode=mode)
        bad = sum(count_neq(p, r) for p, r in zip(pr.paths, ref))
        s_ok = float(pr.scale) == float(s_ref)
        ok_all &= bad == 0 and s_ok
        b.log(f"[check] prep m={m} k={k} rms={gamma is not None} {mode.value}: "
              f"mismatches={bad} scale_equal={s_ok}")
        b.record(section="check", what="prep", m=m, k=k, rms=gamma is not None,
                 mode=mode.value, mismatches=bad, scale_equal=s_ok)
  # GEMM variants vs the float32 XLA reference on the same prepared input.
  for (k, n) in BIG_SHAPES:
    w = heavy_w(b.next_key(), n, k)
    qw = methods.quantize_weight(w, "sharq-nvfp4")
    pw = pack_weight(qw)
    for m in CHECK_MS:
      x = heavy_x(b.next_key(), m, k)
      for mode in PathMode:
        pr = sharq_prep(x, mode=mode)
        ref = sharq_gemm_reference(pr, pw)
        variants = [("auto", GemmImpl.AUTO, None),
                    ("expanded_xla", GemmImpl.EXPANDED_XLA, None),
                    ("expanded_pallas", GemmImpl.EXPANDED_PALLAS, None)]
        if m == 16 and mode is PathMode.EXACT and (k, n) == BIG_SHAPES[0]:
          variants += [(name, GemmImpl.PACKED, cfg) for name, cfg in sweep_cfgs(m, n, k)]
        elif m <= 64:
          variants += [("packed", GemmImpl.PACKED, None)]
        for name, impl, cfg in variants:
          try:
            y = sharq_gemm(pr, pw, impl=impl, config=cfg)
            e = rel_err(y, ref)
            ok = e < 1e-5
          except Exception as ex:  # pylint: disable=broad-except
            e, ok = f"ERROR {type(ex).__name__}: {str(ex)[:600]}", False
          ok_all &= ok
          b.log(f"[check] gemm k={k} n={n} m={m} {mode.value} {name}: rel_err={e}")
          b.record(section="check", what="gemm", k=k, n=n, m=m, mode=mode.value,
                   variant=name, rel_err=e if isinstance(e, float) else str(e), ok=ok)
      # End to end against the core library's XLA reference sharq_dot.
      try:
        y = sharq_matmul(x, pw, out_dtype=jnp.float32)
        yr = linear.sharq_dot_reference(x.astype(jnp.float32), qw)
        yf = sharq_matmul(x, pw, mode=PathMode.FAST, out_dtype=jnp.float32)
        yb = jnp.dot(x.astype(jnp.float32), w.astype(jnp.float32).T,
                     precision=jax.lax.Precision.HIGHEST)
        b.log(f"[check] sharq_matmul vs sharq_dot_reference k={k} n={n} m={m}: "
              f"rel_err={rel_err(y, yr):.2e}; fast vs exact {rel_err(yf, y):.2e}; exact vs "
              f"unquantized float32 product {rel_err(y, yb):.2e} (quantization error)")
        b.record(section="check", what="end2end", k=k, n=n, m=m, rel_err=rel_err(y, yr),
                 fast_vs_exact=rel_err(yf, y), exact_vs_unquantized=rel_err(y, yb),
                 fast_vs_unquantized=rel_err(yf, yb))
      except Exception as ex:  # pylint: disable=broad-except
        ok_all = False
        b.log(f"[check] end2end k={k} n={n} m={m}: ERROR {type(ex).__name__}: "
              f"{str(ex)[:600]}")
  b.log(f"[check] ALL OK: {ok_all}")
  return ok_all


# ------------------------------------------------------------------------------------
# Variant sweep for the packed (decode) kernel
# ------------------------------------------------------------------------------------

SWEEP_SMALL = False


def sweep_cfgs(m, n, k):
  base = default_packed_config(m, n, k)
  rep = dataclasses.replace
  if SWEEP_SMALL:
    out = [("base", base), ("bk64", rep(base, block_k=64)),
           ("bk64_strided", rep(base, block_k=64, interleave="strided"))]
    return out
  out = [("base", base),
         ("strided", rep(base, interleave="strided")),
         ("wx", rep(base, orient="wx")),
         ("wx_strided", rep(base, orient="wx", interleave="strided")),
         ("noasm", rep(base, asm_decode=False))]
  if k % (base.split_k * 128) == 0:
    out.append(("bk128", rep(base, block_k=128)))
    out.append(("bk128_wx", rep(base, block_k=128, orient="wx")))
  if k % (base.split_k * 512) == 0:
    out.append(("bk512", rep(base, block_k=512, num_warps=8)))
  out.append(("bn64", rep(base, block_n=64)))
  if k % (base.split_k * 2 * base.block_k) == 0:
    out.append(("split_x2", rep(base, split_k=base.split_k * 2)))
  if base.split_k > 1:
    out.append(("split_half", rep(base, split_k=base.split_k // 2)))
  out.append(("warps8", rep(base, num_warps=8)))
  out.append(("stages4", rep(base, num_stages=4)))
  return out


PREP_CANDS = [PrepConfig(16, 64, 2), PrepConfig(16, 128, 4), PrepConfig(16, 256, 4),
              PrepConfig(8, 256, 4), PrepConfig(32, 256, 8), PrepConfig(16, 512, 8),
              PrepConfig(32, 128, 4), PrepConfig(64, 128, 8), PrepConfig(8, 128, 2)]


def sec_prepsweep(b: Bench):
  """Prep tile configs at decode and prefill sizes; returns {(m_bucket, k): cfg}."""
  pick = {}
  for (m, k) in PREP_SWEEP:
    if b.left() < 40:
      break
    r = n_calls(m)
    xs = [heavy_x(b.next_key(), m, k) for _ in range(r)]
    res = []
    for cfg in PREP_CANDS:
      if k % cfg.block_k:
        continue
      try:
        t = time_calls(lambda x, cfg=cfg: sharq_prep(x, config=cfg).paths,
                       [(x,) for x in xs], iters=5)
      except Exception as ex:  # pylint: disable=broad-except
        b.log(f"[prepsweep] m={m} k={k} {cfg}: ERROR {type(ex).__name__}: {str(ex)[:300]}")
        continue
      res.append((t, cfg))
      b.log(f"[prepsweep] m={m} k={k} bm={cfg.block_m} bk={cfg.block_k} "
            f"w={cfg.num_warps}: {t*1e6:.1f} us, {m*k*8/t/1e12:.2f} TB/s (exact, 8 B/elem)")
      b.record(section="prepsweep", m=m, k=k, cfg=str(cfg), t_us=t * 1e6)
    if res:
      res.sort(key=lambda r_: r_[0])
      pick[(m, k)] = res[0][1]
      b.log(f"[prepsweep] best m={m} k={k}: {res[0][1]} {res[0][0]*1e6:.1f} us")
  return pick


def prep_cfg_for(prep_pick, m, k):
  if not prep_pick:
    return None
  cands = sorted(prep_pick.items(), key=lambda kv: (abs(math.log2(max(kv[0][0], 1)) -
                                                         math.log2(max(m, 1))),
                                                     kv[0][1] != k))
  cfg = cands[0][1]
  return cfg if k % cfg.block_k == 0 else None


def sec_diag(b: Bench):
  """Core library numerics on this GPU vs the NumPy contract (for the lead)."""
  import ml_dtypes  # pylint: disable=g-import-not-at-top
  from sharq_jax import decompose as dec  # pylint: disable=g-import-not-at-top
  from sharq_jax.kernels.sharq_prep.reference import SHARQ_NVFP4  # pylint: disable=g-import-not-at-top
  r = np.concatenate([np.random.default_rng(0).uniform(0, 448, 200000),
                      np.exp2(np.random.default_rng(1).uniform(-12, 8.8, 200000))])
  r = np.minimum(r, 448).astype(np.float32)
  gpu8 = np.asarray(jnp.asarray(r).astype(jnp.float8_e4m3fn).astype(jnp.float32))
  gpu8j = np.asarray(jax.jit(lambda v: v.astype(jnp.float8_e4m3fn).astype(jnp.float32))(
      jnp.asarray(r)))
  ref8 = r.astype(ml_dtypes.float8_e4m3fn).astype(np.float32)
  b.log(f"[diag] f32->e4m3 on GPU vs ml_dtypes: eager mismatches {int(np.sum(gpu8 != ref8))}, "
        f"jit mismatches {int(np.sum(gpu8j != ref8))} of {r.size}")
  x = heavy_x(b.next_key(), 64, 4096)
  ref, s_np = sharq_prep_numpy(x)
  for name, f in (("eager", lambda v: dec.decompose(v, SHARQ_NVFP4)),
                  ("jit", jax.jit(lambda v: dec.decompose(v, SHARQ_NVFP4)))):
    d = f(x)
    sh, rh = d.paths()
    b.log(f"[diag] core decompose ({name}) on GPU vs NumPy contract: s equal "
          f"{float(d.tensor_scale) == float(s_np)}, S-hat mismatches {count_neq(sh, ref[0])}, "
          f"R-hat mismatches {count_neq(rh, ref[1])} of {sh.size}")
    b.record(section="diag", what=f"decompose_{name}", s_equal=float(d.tensor_scale) == float(s_np),
             s_mismatch=count_neq(sh, ref[0]), r_mismatch=count_neq(rh, ref[1]))


def weights_for(b: Bench, k, n, copies):
  ws = [heavy_w(b.next_key(), n, k) for _ in range(copies)]
  pws = [pack_weight(methods.quantize_weight(w, "sharq-nvfp4")) for w in ws]
  return ws, pws


def sec_sweep(b: Bench):
  best = {}
  for (k, n) in BIG_SHAPES:
    pbytes = n * k * 0.53125
    copies = max(1, min(48, math.ceil(ROTATE_BYTES / pbytes)))
    _, pws = weights_for(b, k, n, copies)
    for m in (16,):
      if b.left() < 60:
        return best
      r = n_calls(m)
      xs = [heavy_x(b.next_key(), m, k) for _ in range(r)]
      prs = [sharq_prep(x) for x in xs]
      results = []
      for name, cfg in sweep_cfgs(m, n, k):
        try:
          t = time_calls(lambda p, w, cfg=cfg: sharq_gemm(p, w, impl="packed", config=cfg,
                                                          out_dtype=jnp.bfloat16),
                         [(prs[i], pws[i % copies]) for i in range(r)])
        except Exception as ex:  # pylint: disable=broad-except
          b.log(f"[sweep] k={k} n={n} m={m} {name}: ERROR {type(ex).__name__}: "
                f"{str(ex)[:400]}")
          continue
        bw = pbytes / t
        results.append((t, name, cfg))
        b.log(f"[sweep] k={k} n={n} m={m} {name}: {t*1e6:.1f} us, payload {bw/1e12:.2f} TB/s "
              f"cfg={cfg}")
        b.record(section="sweep", k=k, n=n, m=m, variant=name, t_us=t * 1e6,
                 payload_tbs=bw / 1e12, cfg=str(cfg))
      if results:
        results.sort(key=lambda r_: r_[0])
        best[(k, n, m)] = results[0][2]
        b.log(f"[sweep] best k={k} n={n} m={m}: {results[0][1]} {results[0][0]*1e6:.1f} us")
  return best


def pick_packed(best, m, n, k):
  """The swept config for this shape (re-tiled for m), or the best style elsewhere."""
  base = default_packed_config(m, n, k)
  swept = (k, n, 16) in best
  style = best.get((k, n, 16)) or (next(iter(best.values())) if best else None)
  if style is None:
    return base
  keep = (lambda f: getattr(style if swept else base, f))
  cfg = dataclasses.replace(style, block_m=base.block_m, block_n=keep("block_n"),
                            split_k=keep("split_k"), block_k=keep("block_k"))
  try:
    cfg.check(m, n, k)
  except ValueError:
    return base
  return cfg


# ------------------------------------------------------------------------------------
# Linear-layer table
# ------------------------------------------------------------------------------------

def sec_linear(b: Bench, best, ms, shapes, dense_pick, prep_pick):
  nvfp4_cfg = jax.nn.get_scaled_dot_general_config("nvfp4")
  dn = (((1,), (1,)), ((), ()))
  cache = {}

  def weights(k, n):
    if (k, n) not in cache:
      wbytes16 = n * k * 2
      copies16 = max(1, min(48, math.ceil(ROTATE_BYTES / wbytes16)))
      pbytes = n * k * 0.53125
      copies4 = max(1, min(48, math.ceil(ROTATE_BYTES / pbytes)))
      ws, pws = weights_for(b, k, n, max(copies16, copies4))
      w8 = [w.astype(jnp.float8_e4m3fn) for w in ws[:copies16]]
      cache[(k, n)] = (wbytes16, copies16, pbytes, copies4, ws, pws, w8)
    return cache[(k, n)]

  for m, (k, n) in [(m, kn) for m in ms for kn in shapes]:
    wbytes16, copies16, pbytes, copies4, ws, pws, w8 = weights(k, n)
    if True:
      if b.left() < 45:
        b.log(f"[linear] budget exhausted before k={k} n={n} m={m}")
        return
      r = n_calls(m)
      xs = [heavy_x(b.next_key(), m, k) for _ in range(r)]
      flops = 2.0 * m * n * k
      row = dict(section="linear", k=k, n=n, m=m)  # and each variant's <name>_timer

      def run(name, fn, sets, bytes_w, row=row):
        try:
          t, row[name + "_timer"] = seconds_per_call(fn, sets)
        except Exception as ex:  # pylint: disable=broad-except
          b.log(f"[linear] k={k} n={n} m={m} {name}: ERROR {type(ex).__name__}: "
                f"{str(ex)[:300]}")
          row[name + "_us"] = None
          return None
        row[name + "_us"] = t * 1e6
        b.log(f"[linear] k={k} n={n} m={m} {name} ({row[name + '_timer']}): {t*1e6:9.1f} us  "
              f"{flops/t/1e12:7.1f} TFLOP/s  weights {bytes_w/t/1e12:5.2f} TB/s")
        return t

      sets16 = [(xs[i], ws[i % copies16]) for i in range(r)]
      run("bf16", lambda x, w: jnp.dot(x, w.T), sets16, wbytes16)
      sets8 = [(xs[i].astype(jnp.float8_e4m3fn), w8[i % copies16]) for i in range(r)]
      run("fp8", lambda x, w: jax.lax.dot_general(x, w, dn,
                                                  preferred_element_type=jnp.bfloat16),
          sets8, wbytes16 / 2)
      if m in (1, 16, 256, 4096):
        run("nvfp4_sdg", lambda x, w: jax.nn.scaled_dot_general(
            x, w, dn, preferred_element_type=jnp.bfloat16, configs=[nvfp4_cfg, nvfp4_cfg]),
            sets16, wbytes16)
      auto = resolve_impl(GemmImpl.AUTO, m, n, k)
      if auto in (GemmImpl.GEMV, GemmImpl.MMA_GEMV, GemmImpl.INT8_GEMV):  # small-M kernels
        impl, cfg = auto, None
      elif m <= 64:
        cfg = pick_packed(best, m, n, k)
        impl = GemmImpl.PACKED
      else:
        impl, cfg = dense_pick.get((k, n), (GemmImpl.EXPANDED_XLA, None))
        if impl is GemmImpl.EXPANDED_PALLAS and cfg is not None:
          try:
            cfg = dataclasses.replace(cfg, block_m=min(cfg.block_m,
                                                       default_dense_config(m, n, k).block_m))
          except ValueError:
            cfg = None
      row["impl"] = impl.value
      row["cfg"] = str(cfg)
      pws_run = stored_for(impl, pws[:min(r, copies4)])
      row["weight_layout"] = pws_run[0].layout.value
      setsq = [(xs[i], pws_run[i % len(pws_run)]) for i in range(r)]
      pcfg = prep_cfg_for(prep_pick, m, k)
      row["prep_cfg"] = str(pcfg)
      for mode in PathMode:  # the int8 GEMV is exact mode's: fast mode runs AUTO's pick
        mode_impl = (resolve_impl(GemmImpl.AUTO, m, n, k, mode)
                     if impl is GemmImpl.INT8_GEMV else impl)
        row[f"impl_{mode.value}"] = mode_impl.value
        run(f"sharq_{mode.value}", lambda x, w, mode=mode, mode_impl=mode_impl: sharq_matmul(
            x, w, mode=mode, impl=mode_impl, gemm_config=cfg, prep_config=pcfg), setsq, pbytes)
      prs = [sharq_prep(x, config=pcfg, layout=prep_layout(impl, m, cfg)) for x in xs]
      run("gemm_exact", lambda p, w: sharq_gemm(p, w, impl=impl, config=cfg,
                                                 out_dtype=jnp.bfloat16),
          [(prs[i], pws_run[i % len(pws_run)]) for i in range(r)], pbytes)
      run("prep_exact", lambda x: sharq_prep(x, config=pcfg), [(x,) for x in xs], 0)
      if m == 64:
        alt = GemmImpl.EXPANDED_XLA if impl is GemmImpl.PACKED else GemmImpl.PACKED
        run("sharq_fast_alt_" + alt.value, lambda x, w: sharq_matmul(
            x, w, impl=alt, mode=PathMode.FAST, prep_config=pcfg), setsq, pbytes)
      bf = row.get("bf16_us")
      for key in ("sharq_exact", "sharq_fast", "gemm_exact"):
        if bf and row.get(key + "_us"):
          row[key + "_speedup_vs_bf16"] = bf / row[key + "_us"]
      if row.get("nvfp4_sdg_us") and row.get("sharq_exact_us"):
        row["sharq_exact_speedup_vs_sdg"] = row["nvfp4_sdg_us"] / row["sharq_exact_us"]
      if row.get("gemm_exact_us"):
        row["gemm_payload_tbs"] = pbytes / (row["gemm_exact_us"] * 1e-6) / 1e12
      if hasattr(b, "ceil"):  # roofline floors from the measured ceilings
        # weight bytes at the HBM read rate, or one product's FLOPs at the bf16 GEMM rate
        row["floor_bf16_us"] = max(wbytes16 / b.ceil["hbm_read"],
                                   flops / b.ceil["bf16_flops"]) * 1e6
        row["floor_sharq_us"] = max(pbytes / b.ceil["hbm_read"],
                                    flops / b.ceil["bf16_flops"]) * 1e6
      b.record(**row)
      b.log(f"[linear] k={k} n={n} m={m} summary: " + json.dumps(
          {kk: (round(v, 2) if isinstance(v, float) else v) for kk, v in row.items()
           if kk.endswith("speedup_vs_bf16") or kk.endswith("vs_sdg") or kk == "gemm_payload_tbs"}))


def sec_dense_pick(b: Bench):
  """Prefill GEMM: expanded-XLA vs expanded-Pallas configs at M = 4096."""
  pick = {}
  m = DENSE_M
  for (k, n) in BIG_SHAPES:
    if b.left() < 90:
      break
    _, pws = weights_for(b, k, n, 2)
    xs = [heavy_x(b.next_key(), m, k) for _ in range(4)]
    prs = [sharq_prep(x) for x in xs]
    cands = [("expanded_xla", GemmImpl.EXPANDED_XLA, None),
             ("pallas_128x256x64_w8s3", GemmImpl.EXPANDED_PALLAS,
              DenseGemmConfig(128, 256, 64, 8, 3))]
    res = []
    for name, impl, cfg in cands:
      try:
        t = time_calls(lambda p, w, impl=impl, cfg=cfg: sharq_gemm(
            p, w, impl=impl, config=cfg, out_dtype=jnp.bfloat16),
                       [(prs[i], pws[i % 2]) for i in range(4)], iters=5)
      except Exception as ex:  # pylint: disable=broad-except
        b.log(f"[dense] k={k} n={n} {name}: ERROR {type(ex).__name__}: {str(ex)[:300]}")
        continue
      tf = 2 * m * n * k * 2 / t  # two products (exact mode)
      res.append((t, name, impl, cfg))
      b.log(f"[dense] k={k} n={n} m={m} {name}: {t*1e6:.0f} us, {tf/1e12:.0f} TFLOP/s "
            f"(2 products)")
      b.record(section="dense", k=k, n=n, m=m, variant=name, t_us=t * 1e6)
    for name, fn in (("expand_xla", lambda w: expand_weight(w)),
                     ("expand_pallas", lambda w: expand_weight_pallas(w))):
      t = time_calls(fn, [(p,) for p in pws], iters=5)
      b.log(f"[dense] {name} k={k} n={n}: {t*1e6:.0f} us "
            f"({(n * k * 2.53125) / t / 1e12:.2f} TB/s)")
      b.record(section="dense", k=k, n=n, variant=name, t_us=t * 1e6)
    if res:
      res.sort(key=lambda r_: r_[0])
      pick[(k, n)] = (res[0][2], res[0][3])
      pick[(n, k)] = pick.get((n, k), (res[0][2], res[0][3]))
  return pick


# ------------------------------------------------------------------------------------
# Prep bandwidth
# ------------------------------------------------------------------------------------

def sec_prep(b: Bench):
  for k in PREP_KS:
    for m in PREP_MS:
      if b.left() < 30:
        return
      r = n_calls(m)
      xs = [heavy_x(b.next_key(), m, k) for _ in range(r)]
      g = (1.0 + 0.1 * jax.random.normal(b.next_key(), (k,))).astype(jnp.bfloat16)
      for rms in (False, True):
        for mode in PathMode:
          cfg = default_config(m, k)
          try:
            t, timer = seconds_per_call(lambda x, mode=mode, rms=rms: sharq_prep(
                x, gamma=g if rms else None, mode=mode).paths, [(x,) for x in xs])
          except Exception as ex:  # pylint: disable=broad-except
            b.log(f"[prep] m={m} k={k}: ERROR {type(ex).__name__}: {str(ex)[:300]}")
            continue
          nbytes = m * k * (2 + 2 + 2 * mode.num_paths)  # stats read, read, write
          bw = nbytes / t
          frac = bw / b.ceil["hbm_copy"] if hasattr(b, "ceil") else float("nan")
          b.log(f"[prep] m={m} k={k} rms={rms} {mode.value} ({timer}): {t*1e6:.1f} us, "
                f"{bw/1e12:.2f} TB/s ({frac*100:.0f}% of copy BW) cfg={cfg}")
          b.record(section="prep", m=m, k=k, rms=rms, mode=mode.value, t_us=t * 1e6,
                   tbs=bw / 1e12, frac_copy=frac, timer=timer)


# ------------------------------------------------------------------------------------
# Decoder step (Llama-3.1-8B-shaped layers, random weights)
# ------------------------------------------------------------------------------------

HID, NH, NKV, HD, FFN = 4096, 32, 8, 128, 14336


def _rms(x, g, eps=1e-5):
  xf = x.astype(jnp.float32)
  y = (xf * jax.lax.rsqrt(jnp.mean(xf * xf, -1, keepdims=True) + eps)).astype(x.dtype)
  return g * y


def _attend(q, kc, vc):
  bsz = q.shape[0]
  q = q.reshape(bsz, NKV, NH // NKV, HD).astype(jnp.float32)
  s = jnp.einsum("bkgd,bskd->bkgs", q, kc.astype(jnp.float32)) * HD**-0.5
  p = jax.nn.softmax(s, axis=-1)
  o = jnp.einsum("bkgs,bskd->bkgd", p, vc.astype(jnp.float32))
  return o.reshape(bsz, NH * HD).astype(jnp.bfloat16)


def _swiglu(gu):
  g, u = jnp.split(gu, 2, axis=-1)
  return (jax.nn.silu(g.astype(jnp.float32)) * u.astype(jnp.float32)).astype(jnp.bfloat16)


def layer_bf16(h, p, kc, vc):
  qkv = jnp.dot(_rms(h, p["ln1"]), p["wqkv"].T)
  a = _attend(qkv[:, :NH * HD], kc, vc)
  h = h + jnp.dot(a, p["wo"].T)
  gu = jnp.dot(_rms(h, p["ln2"]), p["wgu"].T)
  return h + jnp.dot(_swiglu(gu), p["wd"].T)


def layer_sharq(h, p, kc, vc, mode, cfgs, pcfgs):
  mm = lambda x, w, name, gamma=None: sharq_matmul(
      x, w, gamma=gamma, eps=1e-5, mode=mode,
      impl="auto" if cfgs[name] is None else "packed", gemm_config=cfgs[name],
      prep_config=pcfgs[name])
  qkv = mm(h, p["wqkv"], "wqkv", p["ln1"])
  a = _attend(qkv[:, :NH * HD], kc, vc)
  h = h + mm(a, p["wo"], "wo")
  gu = mm(h, p["wgu"], "wgu", p["ln2"])
  return h + mm(_swiglu(gu), p["wd"], "wd")


DEC_LAYERS, DEC_BATCHES, DEC_CALLS = 2, (1, 8), 1


def sec_decoder(b: Bench, best, prep_pick, ctx=512):
  n_layers = DEC_LAYERS
  shapes = dict(wqkv=(HID + 2 * NKV * HD, HID), wo=(HID, NH * HD), wgu=(2 * FFN, HID),
                wd=(HID, FFN))
  layers16, layers4 = [], []
  qpack = jax.jit(lambda w: pack_weight(methods.quantize_weight(w, "sharq-nvfp4")))
  for _ in range(n_layers):
    p16 = {name: (jax.random.normal(b.next_key(), (n, k)) * 0.02).astype(jnp.bfloat16)
           for name, (n, k) in shapes.items()}
    p16["ln1"] = (1 + 0.1 * jax.random.normal(b.next_key(), (HID,))).astype(jnp.bfloat16)
    p16["ln2"] = (1 + 0.1 * jax.random.normal(b.next_key(), (HID,))).astype(jnp.bfloat16)
    p4 = {name: qpack(p16[name]) for name in shapes}
    p4["ln1"], p4["ln2"] = p16["ln1"], p16["ln2"]
    layers16.append(p16)
    layers4.append(p4)
  for bsz in DEC_BATCHES:
    if b.left() < 30:
      return
    kc = heavy_x(b.next_key(), bsz * ctx, NKV * HD).reshape(bsz, ctx, NKV, HD)
    vc = heavy_x(b.next_key(), bsz * ctx, NKV * HD).reshape(bsz, ctx, NKV, HD)
    # The library's own choice (AUTO: a GEMV at batch 1-4) unless a sweep picked tiles
    # of the tensor-core kernel for a batch it runs at.
    auto_impl = resolve_impl(GemmImpl.AUTO, bsz)
    auto_gemv = auto_impl in (GemmImpl.GEMV, GemmImpl.MMA_GEMV, GemmImpl.INT8_GEMV)
    cfgs = {name: pick_packed(best, bsz, n, k) if best and not auto_gemv else None
            for name, (n, k) in shapes.items()}
    pcfgs = {name: prep_cfg_for(prep_pick, bsz, k) for name, (n, k) in shapes.items()}
    hs = [heavy_x(b.next_key(), bsz, HID) for _ in range(DEC_CALLS)]

    def step16(h):
      for p in layers16:
        h = layer_bf16(h, p, kc, vc)
      return h

    run_layers = [{name: (stored_for(auto_impl, [v])[0] if name in shapes else v)
                   for name, v in p4.items()} for p4 in layers4]

    def step4(h, mode):
      for p in run_layers:
        h = layer_sharq(h, p, kc, vc, mode, cfgs, pcfgs)
      return h

    row = dict(section="decoder", batch=bsz, layers=n_layers, ctx=ctx,
               weight_layout=run_layers[0]["wo"].layout.value)
    try:
      # net: the program's fixed launch cost removed (harness.time_calls_net).
      raw16, t16 = harness.time_calls_net(step16, [(h,) for h in hs])
      row["bf16_us"], row["bf16_raw_us"] = t16 * 1e6, raw16 * 1e6
      for mode in PathMode:
        raw4, t4 = harness.time_calls_net(lambda h, mode=mode: step4(h, mode),
                                          [(h,) for h in hs])
        row[f"sharq_{mode.value}_us"] = t4 * 1e6
        row[f"sharq_{mode.value}_raw_us"] = raw4 * 1e6
        row[f"sharq_{mode.value}_speedup"] = t16 / t4
      b.log(f"[decoder] batch={bsz} {n_layers} layers ctx={ctx}: bf16 {t16*1e6:.0f} us/step "
            f"({bsz/t16:.0f} tok/s); sharq exact {row['sharq_exact_us']:.0f} us "
            f"({row['sharq_exact_speedup']:.2f}x); fast {row['sharq_fast_us']:.0f} us "
            f"({row['sharq_fast_speedup']:.2f}x)")
      # Device time from a profiler trace: the kernels (busy) and the step's span on
      # the device (kernels plus the gaps between them), without the host's dispatch.
      steps = {"bf16": step16} | {f"sharq_{m.value}": functools.partial(step4, mode=m)
                                  for m in PathMode}
      dev = {name: harness.device_time_calls(fn, [(h,) for h in hs])
             for name, fn in steps.items()}
      if dev["bf16"]["kernels"]:  # a device was traced (not the CPU smoke run)
        for name, d in dev.items():
          row[f"{name}_busy_us"] = d["busy_s"] * 1e6
          row[f"{name}_span_us"] = d["span_s"] * 1e6
        b.log(f"[decoder] batch={bsz} device: " + "; ".join(
            f"{name} busy {d['busy_s']*1e6:.0f} us, span {d['span_s']*1e6:.0f} us"
            + ("" if name == "bf16" else
               f" ({dev['bf16']['busy_s']/d['busy_s']:.2f}x busy, "
               f"{dev['bf16']['span_s']/d['span_s']:.2f}x span)")
            for name, d in dev.items()))
    except Exception as ex:  # pylint: disable=broad-except
      b.log(f"[decoder] batch={bsz}: ERROR {type(ex).__name__}: {str(ex)[:500]}")
      b.log(traceback.format_exc()[-1500:])
    b.record(**row)


def _smoke_mode():
  """Tiny shapes and interpret-mode kernels, to exercise this script on a CPU."""
  g = globals()
  for name in ("sharq_prep", "sharq_gemm", "sharq_matmul", "expand_weight_pallas"):
    g[name] = functools.partial(g[name], interpret=True)
  g["SHAPES"] = [(256, 128), (128, 256)]
  g["BIG_SHAPES"] = [(256, 128), (128, 256)]
  g["CHECK_PREP"] = [(5, 256), (33, 128)]
  g["PREP_SWEEP"] = [(16, 256), (40, 128)]
  g["CHECK_MS"] = (1, 16, 40)
  g["PREP_KS"], g["PREP_MS"] = (256,), (16, 40)
  g["CEIL_N"], g["CEIL_MM"] = 1 << 16, 256
  g["DENSE_M"] = 64
  g["ROTATE_BYTES"] = 1e5
  g["HID"], g["NH"], g["NKV"], g["HD"], g["FFN"] = 128, 4, 2, 32, 256
  g["n_calls"] = lambda m: 2
  g["_SMOKE"] = True
  harness.WARMUP_SECONDS = 0.0  # no GPU clock to ramp up


_SMOKE = False
# --linear_timer device: the linear section reads each call's kernel time from a
# profiler trace (harness.device_time_calls) instead of the wall clock.
LINEAR_DEVICE_TIMER = False


def main(argv=None) -> list[dict]:
  """Runs the sections named by argv (sys.argv[1:] when None); returns the records
  written to OUT/results.jsonl by this run (experiments/bench_linear.py reads them)."""
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--out", default=os.environ.get("OUT", "bench_out"))
  ap.add_argument("--budget_s", type=float, default=540)
  ap.add_argument("--sections",
                  default="ceilings,diag,check,sweep,prepsweep,dense,decoder,linear,prep")
  ap.add_argument("--ms", default=",".join(map(str, MS)))
  ap.add_argument("--shapes", default="all")
  ap.add_argument("--smoke", action="store_true",
                  help="CPU smoke test: tiny shapes, kernels in interpret mode")
  ap.add_argument("--sweep_small", action="store_true")
  ap.add_argument("--decoder_batches", default=",".join(map(str, DEC_BATCHES)),
                  help="batch sizes of the decoder-step section")
  ap.add_argument("--linear_timer", default="wall", choices=("wall", "device"),
                  help="linear, ceilings and prep sections: wall clock (default) or the "
                       "kernels' device time")
  ap.add_argument("--weight_layout", default="rows", choices=[v.value for v in WeightLayout],
                  help="linear and decoder sections: the layout of the MMA GEMV's weights")
  args = ap.parse_args(argv)
  globals()["GEMV_WEIGHT_LAYOUT"] = WeightLayout(args.weight_layout)
  globals()["LINEAR_DEVICE_TIMER"] = args.linear_timer == "device"
  globals()["DEC_BATCHES"] = tuple(int(v) for v in args.decoder_batches.split(","))
  if args.sweep_small:
    globals()["SWEEP_SMALL"] = True
  if args.smoke:
    _smoke_mode()
  b = Bench(args.out, args.budget_s)
  secs = args.sections.split(",")
  b.log(f"[env] jax {jax.__version__} devices {jax.devices()} commit "
        f"{os.environ.get('GIT_COMMIT', '?')} date {time.strftime('%Y-%m-%d %H:%M:%S')}")
  b.record(section="env", jax=jax.__version__, device=str(jax.devices()[0].device_kind),
           commit=os.environ.get("GIT_COMMIT", "?"), argv=sys.argv)
  best, dense_pick, prep_pick = {}, {}, {}
  steps = dict(
      ceilings=lambda: sec_ceilings(b),
      diag=lambda: sec_diag(b),
      check=lambda: sec_check(b, sweep_cfgs),
      sweep=lambda: best.update(sec_sweep(b)),
      prepsweep=lambda: prep_pick.update(sec_prepsweep(b)),
      dense=lambda: dense_pick.update(sec_dense_pick(b)),
      linear=lambda: sec_linear(b, best, [int(v) for v in args.ms.split(",")],
                                SHAPES if args.shapes == "all" else
                                [tuple(map(int, s.split("x")))
                                 for s in args.shapes.split(",")], dense_pick, prep_pick),
      prep=lambda: sec_prep(b),
      decoder=lambda: sec_decoder(b, best, prep_pick),
  )
  for name in secs:
    fn = steps[name]
    if b.left() < 20:
      b.log(f"[main] skipping {name}: budget")
      continue
    t = time.time()
    try:
      fn()
    except Exception:  # pylint: disable=broad-except
      b.log(f"[main] section {name} failed:\n{traceback.format_exc()[-3000:]}")
    b.log(f"[main] section {name} took {time.time()-t:.0f} s; {b.left():.0f} s left")
  b.log("[main] done")
  return b.records


if __name__ == "__main__":
  main()
