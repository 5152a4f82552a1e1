"""Where a decode SharQ linear's time goes: kernel by kernel, under Nsight Compute.

Runs one decode call (M = 16 by default) of the SharQ linear (prep + packed GEMM) and
of XLA's bf16 `jnp.dot` at the two big Llama-3.1-8B shapes, after warm-up, with the
launches to profile bracketed by cudaProfilerStart/Stop (jax.profiler is not used).
Typical use on the device (Firecracker machines allow counters with --clock-control
none):

  ncu --clock-control none --profile-from-start off --csv --page raw \\
      --metrics gpu__time_duration.sum,dram__bytes_read.sum,launch__grid_size,\\
launch__registers_per_thread,sm__warps_active.avg.pct_of_peak_sustained_active \\
      python3 benchmarks/profile_decode.py > $OUT/ncu.csv

Without ncu it prints the wall-clock time per call (R calls in one jit program), so
the sum of kernel durations can be set against the time a caller sees. With --trace DIR
it also runs that R-call program under jax.profiler and prints each kernel's device
time per call from the trace (benchmarks/kernel_trace.py) — the way to split a call
into kernels when ncu is unavailable (it segfaulted on the device in session 3):

  PYTHONUNBUFFERED=1 python3 benchmarks/profile_decode.py --m 1 --trace $OUT/trace
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import _bootstrap, harness, kernel_trace  # noqa: E402

_bootstrap.setup()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from sharq_jax.kernels.sharq_matmul import (MmaGemvConfig, WeightLayout,  # noqa: E402
                                            pack_weight_from_float, sharq_matmul)
from sharq_jax.kernels.sharq_matmul import specs as mm_specs  # noqa: E402


def _profiler(call: str) -> None:
  """cuProfilerStart / cuProfilerStop from the driver (a no-op without a GPU driver)."""
  try:
    getattr(ctypes.CDLL("libcuda.so.1"), call)()
  except OSError:
    pass


def main():
  """Wall time per call of the SharQ and bf16 decode linears; optional profiler trace."""
  ap = argparse.ArgumentParser()
  ap.add_argument("--m", type=int, default=16)
  ap.add_argument("--shapes", default="4096x14336,14336x4096")
  ap.add_argument("--calls", type=int, default=24, help="calls per timing (wall clock)")
  ap.add_argument("--trace", default=None,
                  help="directory for jax.profiler traces (device time per kernel)")
  ap.add_argument("--copies", type=int, default=8,
                  help="weight copies cycled (8 × 31 MB packed / 8 × 117 MB bf16 at the "
                  "big shapes: beyond the 60 MB L2)")
  ap.add_argument("--impl", default="auto", help="GEMM impl (GemmImpl value)")
  ap.add_argument("--mode", default="exact", help="path mode: exact or fast")
  ap.add_argument("--weight_layout", default="rows", choices=[l.value for l in WeightLayout],
                  help="how the packed weight is stored (tiles_64: the tensor-core GEMVs' "
                  "contiguous tiles)")
  ap.add_argument("--gemm_config", default="",
                  help="MmaGemvConfig fields for the (MMA or int8) GEMV, e.g. "
                  "'split_k=8,prefetch=4,queue_words=True' (default: the impl's default)")
  ap.add_argument("--smoke", action="store_true",
                  help="CPU smoke test: one tiny shape, kernels in interpret mode")
  args = ap.parse_args()
  if args.smoke:
    args.shapes, args.calls, args.copies = "256x64", 2, 2
    harness.WARMUP_SECONDS = 0.0
  gemm_config = (harness.parse_tiles(args.gemm_config, MmaGemvConfig)[0]
                 if args.gemm_config else None)
  key = jax.random.PRNGKey(0)
  for shape in args.shapes.split(","):
    k, n = map(int, shape.split("x"))
    copies = args.copies
    ws = [mm_specs.heavy_weight(jax.random.fold_in(key, i), n, k) for i in range(copies)]
    pws = [pack_weight_from_float(w.astype(jnp.float32), WeightLayout(args.weight_layout))
           for w in ws]
    xs = [mm_specs.heavy_activations(jax.random.fold_in(key, 100 + i), args.m, k)
          for i in range(args.calls)]
    sharq = jax.jit(lambda x, w: sharq_matmul(x, w, impl=args.impl, mode=args.mode,
                                              gemm_config=gemm_config,
                                              interpret=args.smoke))
    bf16 = jax.jit(lambda x, w: jnp.dot(x, w.T))
    for name, fn, wl in (("sharq", sharq, pws), ("bf16", bf16, ws)):
      jax.block_until_ready(fn(xs[0], wl[0]))
      sets = [(xs[i], wl[i % copies]) for i in range(args.calls)]
      t = harness.time_calls(fn, sets)
      print(f"[wall] {name:5s} K={k} N={n} M={args.m}: {t * 1e6:.1f} us per call", flush=True)
      if args.trace:
        repeats = 3
        path = kernel_trace.trace_programs(
            jax.jit(lambda sets, fn=fn: [fn(*a) for a in sets]), (sets,),
            os.path.join(args.trace, f"{name}_{k}x{n}_m{args.m}"), repeats)
        summary = kernel_trace.kernel_summary(path)
        text = (kernel_trace.format_summary(summary, args.calls * repeats) if summary else
                f"no device process; processes: {kernel_trace.process_names(path)}")
        print(f"[trace] {name} K={k} N={n} M={args.m} ({path}):\n{text}", flush=True)
      jax.block_until_ready(fn(xs[-1], wl[1 % copies]))
      _profiler("cuProfilerStart")
      jax.block_until_ready(fn(xs[-2], wl[2 % copies]))
      _profiler("cuProfilerStop")


if __name__ == "__main__":
  main()
