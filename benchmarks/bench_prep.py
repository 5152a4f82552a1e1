"""The fused SharQ preparation on the H200: its GPU division helpers checked against
div.rn.f32, the kernel checked bit for bit against the NumPy contract, then its device
time and bandwidth beside an XLA copy with the same bytes, in one process.

Usage (on the device; BENCHMARKS.md gives each table's exact command):
  PYTHONUNBUFFERED=1 python3 benchmarks/bench_prep.py --out $OUT
      [--sections numerics,check,time,sweep] [--budget_s 500] [--ab] [--smoke]

Sections:
  numerics  div_rn_short against div.rn.f32 for every finite E4M3 divisor (and 6) over
            every float32 in [1, 4) (both quotient binades), with and without the |·|
            cap; rcp_rn_short for every E4M3 value; div_rn_by_scale over random x for
            64 scales (some outside its fast range), bitwise where |x/s| ≥ 2^-12.
  check     sharq_prep against sharq_prep_numpy (NaN/Inf injected), both modes, with
            and without RMSNorm, every layout.
  time      device time per call (profiler trace, kernels only) of: the XLA amax pass,
            the prep kernel alone (scale given), the whole sharq_prep, and an XLA
            "copy" reading X and writing as many float16 bytes as the paths (the
            bandwidth the kernel's own bytes could reach); --ab adds the previous
            kernel (benchmarks/_ab_before, a copy of the last commit's, not committed).
  sweep     tiles of the prep kernel alone at the prefill shapes.
Fresh heavy-tailed activations per call (Student-t times log-normal channel scales).
--smoke (CPU): tiny shapes, interpret-mode kernels, one call per timed program, no
numerics section; the device timer reads zeros there (no device process in the trace).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _bootstrap  # noqa: E402
import harness  # noqa: E402

_bootstrap.setup()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_dtypes  # noqa: E402
import numpy as np  # noqa: E402
from jax.experimental import pallas as pl  # noqa: E402

from sharq_jax.kernels import _compat, common  # noqa: E402
from sharq_jax.kernels.sharq_prep import (PathLayout, PathMode, PrepConfig,  # noqa: E402
                                          default_config, prep_stats, sharq_prep)
from sharq_jax.kernels.sharq_prep import specs as prep_specs  # noqa: E402
from sharq_jax.kernels.sharq_prep.reference import sharq_prep_numpy  # noqa: E402

TIME_SHAPES = ((1, 4096), (16, 14336), (4096, 4096), (4096, 14336), (16384, 4096),
               (16384, 14336))
CHECK_SHAPES = ((1, 4096), (7, 14336), (256, 4096), (2048, 4096), (512, 14336))
SWEEP_SHAPES = ((4096, 4096), (4096, 14336), (16384, 4096))
SWEEP_TILES = [PrepConfig(bm, bk, w) for bm, bk, w in
               ((16, 128, 4), (8, 128, 2), (16, 256, 4), (32, 128, 4), (16, 64, 2),
                (32, 256, 8), (64, 128, 8), (8, 256, 4))]
ROWS, COLS, BLOCK_ROWS = 16384, 1024, 8  # 2^24 float32 values per numerics batch
SMOKE = dict(CHECK_SHAPES=((9, 128),), TIME_SHAPES=((2, 128),),
             SWEEP_SHAPES=((16, 128),), SWEEP_TILES=[PrepConfig(16, 64, 2)])
INTERPRET = False  # --smoke sets it: the kernels run in interpret mode


def prep(x, **kw):
  """sharq_prep, in interpret mode under --smoke."""
  return sharq_prep(x, interpret=INTERPRET, **kw)


def n_calls(m: int) -> int:
  """Calls per timed program: enough fresh inputs that none comes from the L2."""
  if INTERPRET:  # smoke: no L2 to defeat; each call is one more interpreted kernel
    return 1
  return 24 if m <= 64 else (8 if m <= 1024 else (4 if m <= 4096 else 2))


# ------------------------------------------------------------------------------------
# numerics
# ------------------------------------------------------------------------------------

def _quotients(fast_fn, x, d):
  """(fast_fn(x, d), div.rn(x, d)) from one Pallas kernel over (ROWS, COLS) x."""
  def kernel(x_ref, d_ref, fast_ref, exact_ref):
    xv, dv = x_ref[...], d_ref[...]
    exact_ref[...] = common.div_rn(xv, dv, gpu=True)
    fast_ref[...] = fast_fn(xv, dv)
  tile = pl.BlockSpec((BLOCK_ROWS, COLS), lambda i: (i, 0))
  out = jax.ShapeDtypeStruct(x.shape, jnp.float32)
  return pl.pallas_call(
      kernel, grid=(x.shape[0] // BLOCK_ROWS,),
      in_specs=[tile, pl.BlockSpec((1, 1), lambda i: (0, 0))], out_specs=[tile, tile],
      out_shape=[out, out], compiler_params=_compat.compiler_params(4, 1))(x, d)


def _bits_neq(a, b, where=None):
  a = jax.lax.bitcast_convert_type(a, jnp.uint32)
  b = jax.lax.bitcast_convert_type(b, jnp.uint32)
  neq = a != b
  return jnp.sum(neq if where is None else neq & where)


def _short(xv, dv):
  return common.div_rn_short(xv, dv, common.rcp_rn_short(dv, gpu=True), gpu=True)


def _short_capped(xv, dv):
  return common.div_rn_short(xv, dv, common.rcp_rn_short(dv, gpu=True), gpu=True,
                             abs_cap=common.E2M1_MAX)


def _by_scale(xv, dv):
  return common.div_rn_by_scale(xv, dv, gpu=True)


@jax.jit
def _short_mismatches(x, d):
  fast, exact = _quotients(_short, x, d)
  capped, _ = _quotients(_short_capped, x, d)
  return _bits_neq(fast, exact), _bits_neq(capped, jnp.minimum(jnp.abs(exact), 6.0))


@jax.jit
def _scale_mismatches(x, s):
  fast, exact = _quotients(_by_scale, x, s)
  big = jnp.isfinite(x) & (((jnp.abs(exact) >= common.FAST_SCALE_EXACT_FROM) & (
      jnp.abs(exact) <= 2.0**100)) | (x == 0))
  small_ok = jnp.isfinite(x) & (jnp.abs(exact) < common.FAST_SCALE_EXACT_FROM)
  sign = jnp.isfinite(x) & (jnp.signbit(fast) != jnp.signbit(exact))
  return (_bits_neq(fast, exact, big),  # bitwise: signed zeros included
          jnp.sum(small_ok & ~(jnp.abs(fast) < 2 * common.FAST_SCALE_EXACT_FROM)),
          jnp.sum(big), jnp.sum(sign))


@jax.jit
def _refined_rcp_mismatches(s):
  def kernel(s_ref, fast_ref, exact_ref):
    sv = s_ref[...]
    fast_ref[...] = common.rcp_refined(sv)
    exact_ref[...] = common.div_rn(jnp.ones_like(sv), sv, gpu=True)
  tile = pl.BlockSpec((BLOCK_ROWS, COLS), lambda i: (i, 0))
  out = jax.ShapeDtypeStruct(s.shape, jnp.float32)
  fast, exact = pl.pallas_call(
      kernel, grid=(s.shape[0] // BLOCK_ROWS,), in_specs=[tile], out_specs=[tile, tile],
      out_shape=[out, out], compiler_params=_compat.compiler_params(4, 1))(s)
  return _bits_neq(fast, exact)


def sec_numerics(b: harness.Recorder):
  e4m3 = np.frombuffer(np.arange(1, 127, dtype=np.uint8).tobytes(),
                       dtype=ml_dtypes.float8_e4m3fn).astype(np.float32)
  # rcp_rn_short for every positive E4M3 value (padded to a tile with 1.0).
  d = np.ones(128, np.float32)
  d[:126] = e4m3
  d2 = jnp.asarray(d.reshape(8, 16))
  def rcp_kernel(d_ref, fast_ref, exact_ref):
    fast_ref[...] = common.rcp_rn_short(d_ref[...], gpu=True)
    exact_ref[...] = common.div_rn(jnp.ones_like(d_ref[...]), d_ref[...], gpu=True)
  out = jax.ShapeDtypeStruct((8, 16), jnp.float32)
  fast, exact = pl.pallas_call(rcp_kernel, out_shape=[out, out])(d2)
  bad = int(_bits_neq(fast, exact))
  b.log(f"[numerics] rcp_rn_short, 126 E4M3 values: {bad} mismatches vs div.rn "
        f"{'OK' if bad == 0 else 'FAIL'}")
  b.record(section="numerics", what="rcp_rn_short", cases=126, mismatches=bad)
  # div_rn_short: every float32 in [1, 4) over every divisor.
  x = jax.lax.bitcast_convert_type(
      jnp.arange(0x3F800000, 0x40800000, dtype=jnp.uint32), jnp.float32).reshape(ROWS, COLS)
  total = [0, 0]
  for dv in list(e4m3) + [np.float32(6.0)]:
    m1, m2 = _short_mismatches(x, jnp.full((1, 1), dv, jnp.float32))
    total[0] += int(m1)
    total[1] += int(m2)
  n = x.size * (len(e4m3) + 1)
  b.log(f"[numerics] div_rn_short, {len(e4m3) + 1} divisors x 2^24 dividends: "
        f"{total[0]} mismatches, capped {total[1]} "
        f"{'OK' if total == [0, 0] else 'FAIL'}")
  b.record(section="numerics", what="div_rn_short", cases=n, mismatches=total[0],
           capped_mismatches=total[1])
  # div_rn_by_scale: random x of every magnitude (and specials) over 64 scales.
  rng = np.random.default_rng(7)
  mags = np.exp2(rng.uniform(-140, 130, ROWS * COLS))
  xs = (mags * rng.choice([-1.0, 1.0], mags.size)).astype(np.float32)
  xs[:6] = [0.0, -0.0, np.inf, -np.inf, np.nan, 2.0**-149]
  xs[6:4096] = np.where(rng.random(4090) < 0.5, 0.0, -0.0)  # signed zeros
  x = jnp.asarray(xs.reshape(ROWS, COLS))
  scales = np.exp2(rng.uniform(-70, 70, 64)).astype(np.float32)
  mism = small = checked = signs = 0
  for s in scales:
    m1, m2, c, sg = _scale_mismatches(x, jnp.full((1, 1), s, jnp.float32))
    mism, small, checked = mism + int(m1), small + int(m2), checked + int(c)
    signs += int(sg)
  ok = mism == 0 and small == 0 and signs == 0
  b.log(f"[numerics] div_rn_by_scale, 64 scales x 2^24 x: {mism} bitwise mismatches in "
        f"{checked} quotients in [2^-12, 2^100] or zero, {small} small ones >= 2^-11, "
        f"{signs} finite x of any size with the wrong sign {'OK' if ok else 'FAIL'}")
  b.record(section="numerics", what="div_rn_by_scale", cases=checked, mismatches=mism,
           small_violations=small, sign_mismatches=signs)
  # Is the hoisted reciprocal RN(1/s) itself? (Information: the fast path does not
  # need it to be, but where it is, Markstein's theorem applies as stated.)
  s_all = jax.lax.bitcast_convert_type(
      jnp.arange(0x3F800000, 0x40000000, dtype=jnp.uint32), jnp.float32)
  s_all = s_all.reshape(-1, COLS)
  bad = int(_refined_rcp_mismatches(s_all))
  b.log(f"[numerics] info: the hoisted reciprocal differs from RN(1/s) for {bad} of "
        f"2^23 significands")
  b.record(section="numerics", what="rcp_refined_vs_rn", cases=2**23, mismatches=bad)


# ------------------------------------------------------------------------------------
# check
# ------------------------------------------------------------------------------------

def _signed_zero_neq(a, b) -> int:
  a = np.asarray(a, np.float32)
  b = np.asarray(b, np.float32)
  return int(np.sum((a == 0) & (b == 0) & (np.signbit(a) != np.signbit(b))))


def sec_check(b: harness.Recorder, key):
  for m, k in CHECK_SHAPES:
    key, k1, k2 = jax.random.split(key, 3)
    x = prep_specs.heavy_activations(k1, m, k)
    x = x.at[0, 5].set(jnp.nan).at[m - 1, k - 3].set(jnp.inf)
    # Signed zeros: a run of -0 and +0 in a row that also holds other values.
    x = x.at[m // 2, 40:72].set(jnp.where(jnp.arange(32) % 3 == 0, 0.0, -0.0))
    gamma = (1.0 + 0.1 * jax.random.normal(k2, (k,))).astype(jnp.bfloat16)
    for rms in (False, True):
      for mode in PathMode:
        for layout in PathLayout:
          if layout is PathLayout.INT8 and mode is not PathMode.EXACT:
            continue  # INT8 holds exact mode's two paths only
          g = gamma if rms else None
          pr = prep(x, gamma=g, mode=mode, layout=layout)
          if layout is PathLayout.MMA:  # the contract's paths, once per (rms, mode)
            want, s = sharq_prep_numpy(x, gamma=g, rstd=pr.rstd, mode=mode)
          got = pr.in_mma_layout().paths
          neq = sum(harness.count_neq(a, w) for a, w in zip(got, want))
          # int8 has no -0: an INT8 path's -0 comes back +0 (a product's sign only).
          zeros = (0 if layout is PathLayout.INT8
                   else sum(_signed_zero_neq(a, w) for a, w in zip(got, want)))
          ok = neq == 0 and zeros == 0 and float(pr.scale) == float(s)
          b.log(f"[check] prep m={m} k={k} rms={rms} {mode.value} {layout.value}: "
                f"{neq} mismatches, scale {'=' if float(pr.scale) == float(s) else '!='}"
                f", signed zeros differing {zeros} {'OK' if ok else 'FAIL'}")
          b.record(section="check", m=m, k=k, rms=rms, mode=mode.value,
                   layout=layout.value, mismatches=neq, signed_zero_neq=zeros, ok=ok)
  return key


# ------------------------------------------------------------------------------------
# time / sweep
# ------------------------------------------------------------------------------------

def _copy_like(x, num_paths):
  """What XLA does with the kernel's bytes: read X once, write num_paths float16 arrays
  (distinct values, so that no write can be elided)."""
  xf = x.astype(jnp.float32)
  return [(xf * (i + 1)).astype(jnp.float16) for i in range(num_paths)]


def _prep_kernel_alone(x, s, mode, config):
  return prep(x, mode=mode, scale=s, config=config).paths


def _device_us(fn, sets) -> float:
  t = harness.device_time_calls(fn, sets)
  return t["busy_s"] * 1e6


def sec_time(b: harness.Recorder, key, ab: bool):
  before = None
  if ab and not INTERPRET:
    try:
      from benchmarks._ab_before import prep_before  # pylint: disable=g-import-not-at-top
      before = prep_before.sharq_prep
    except ImportError as ex:
      b.log(f"[time] --ab: no previous kernel ({ex})")
  for m, k in TIME_SHAPES:
    if b.left() < 40:
      b.log("[time] budget spent")
      return key
    r = n_calls(m)
    keys = jax.random.split(key, r + 1)
    key = keys[0]
    xs = [prep_specs.heavy_activations(kk, m, k) for kk in keys[1:]]
    ss = [prep_stats(x, None, 1e-6)[0] for x in xs]
    for mode in (PathMode.EXACT,) if INTERPRET else PathMode:  # smoke: one mode
      cfg = default_config(m, k)
      kernel_bytes = m * k * (2 + 2 * mode.num_paths)
      rows = {
          "copy": _device_us(functools.partial(_copy_like, num_paths=mode.num_paths),
                             [(x,) for x in xs]),
          "amax pass": _device_us(lambda x: prep_stats(x, None, 1e-6)[0],
                                  [(x,) for x in xs]),
          "kernel": _device_us(functools.partial(_prep_kernel_alone, mode=mode,
                                                 config=cfg), list(zip(xs, ss))),
          "sharq_prep": _device_us(lambda x, mode=mode: prep(x, mode=mode).paths,
                                   [(x,) for x in xs]),
      }
      if before is not None:
        rows["kernel before"] = _device_us(
            lambda x, s, mode=mode: before(x, mode=mode, scale=s, config=cfg).paths,
            list(zip(xs, ss)))
      copy_bw = kernel_bytes / max(rows["copy"] * 1e-6, 1e-12)
      for what, us in rows.items():
        us = max(us, 1e-6)  # the CPU trace (smoke) has no device kernels
        # sharq_prep also reads X in its amax pass; that pass alone reads X only.
        nbytes = {"sharq_prep": kernel_bytes + 2 * m * k, "amax pass": 2 * m * k}.get(
            what, kernel_bytes)
        bw = nbytes / (us * 1e-6)
        b.log(f"[time] m={m} k={k} {mode.value} {what}: {us:.1f} us, {bw / 1e12:.2f} TB/s"
              f" ({bw / copy_bw * 100:.0f}% of the copy's) cfg={cfg}")
        b.record(section="time", m=m, k=k, mode=mode.value, what=what, us=us,
                 tbs=bw / 1e12, frac_copy=bw / copy_bw, cfg=str(cfg))
  return key


def sec_sweep(b: harness.Recorder, key):
  for m, k in SWEEP_SHAPES:
    r = n_calls(m)
    keys = jax.random.split(key, r + 1)
    key = keys[0]
    xs = [prep_specs.heavy_activations(kk, m, k) for kk in keys[1:]]
    ss = [prep_stats(x, None, 1e-6)[0] for x in xs]
    for cfg in SWEEP_TILES:
      if b.left() < 20:
        b.log("[sweep] budget spent")
        return key
      try:
        us = _device_us(functools.partial(_prep_kernel_alone, mode=PathMode.EXACT,
                                          config=cfg), list(zip(xs, ss)))
      except Exception as ex:  # pylint: disable=broad-except
        b.log(f"[sweep] m={m} k={k} {cfg}: ERROR {type(ex).__name__}: {str(ex)[:200]}")
        continue
      bw = m * k * 6 / (max(us, 1e-6) * 1e-6)
      b.log(f"[sweep] m={m} k={k} bm={cfg.block_m} bk={cfg.block_k} w={cfg.num_warps}: "
            f"{us:.1f} us, {bw / 1e12:.2f} TB/s")
      b.record(section="sweep", m=m, k=k, cfg=str(cfg), us=us, tbs=bw / 1e12)
  return key


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--out", required=True, help="folder for log.txt and results.jsonl")
  ap.add_argument("--sections", default="numerics,check,time,sweep")
  ap.add_argument("--budget_s", type=float, default=500.0)
  ap.add_argument("--ab", action="store_true",
                  help="also time benchmarks/_ab_before's kernel (if present)")
  ap.add_argument("--smoke", action="store_true", help="CPU: tiny shapes, interpret mode")
  args = ap.parse_args()
  if args.smoke:
    global INTERPRET
    INTERPRET = True
    globals().update(SMOKE)
  b = harness.Recorder(args.out, args.budget_s)
  b.log(f"bench_prep: jax {jax.__version__}, {jax.devices()[0].device_kind}, "
        f"commit {os.environ.get('GIT_COMMIT', '?')}, {time.strftime('%Y-%m-%d %H:%M')}")
  key = jax.random.PRNGKey(int(time.time()) & 0xFFFF)
  sections = args.sections.split(",")
  if "numerics" in sections and not INTERPRET:  # GPU instructions only
    sec_numerics(b)
  if "check" in sections:
    key = sec_check(b, key)
  if "time" in sections:
    key = sec_time(b, key, args.ab)
  if "sweep" in sections:
    sec_sweep(b, key)
  b.log(f"done in {time.time() - b.t0:.0f} s")


if __name__ == "__main__":
  main()
