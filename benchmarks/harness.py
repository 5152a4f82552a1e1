"""What every benchmark script shares: a log + JSON-lines recorder with a time budget,
and the timing loop (R calls inside one jit program, warm-up, median)."""

from __future__ import annotations

import ast
import json
import os
import statistics
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np


def rel_err(y, ref) -> float:
  """‖y − ref‖ / ‖ref‖ in float32."""
  y = jnp.asarray(y, jnp.float32)
  ref = jnp.asarray(ref, jnp.float32)
  return float(jnp.linalg.norm(y - ref) / jnp.linalg.norm(ref))


def count_neq(a, b) -> int:
  """How many entries differ (NaN equals NaN): bit-for-bit checks of float arrays."""
  a = np.asarray(a, np.float32)
  b = np.asarray(b, np.float32)
  return int(np.sum(~((a == b) | (np.isnan(a) & np.isnan(b)))))


def parse_tiles(spec: str, cls) -> list:
  """Tile configs from the command line: "split_k=4,prefetch=2;split_k=8" gives
  [cls(split_k=4, prefetch=2), cls(split_k=8)] (values are Python literals)."""
  tiles = []
  for item in filter(None, (t.strip() for t in spec.split(";"))):
    kwargs = {}
    for pair in filter(None, item.split(",")):
      name, _, value = pair.partition("=")
      kwargs[name.strip()] = ast.literal_eval(value.strip())
    tiles.append(cls(**kwargs))
  return tiles


class Recorder:
  """Writes $out/log.txt and $out/results.jsonl; tracks the run's time budget."""

  def __init__(self, out_dir: str, budget_s: float):
    self.out_dir = out_dir
    os.makedirs(out_dir, exist_ok=True)
    self.t0 = time.time()
    self.budget_s = budget_s
    self.log_f = open(os.path.join(out_dir, "log.txt"), "a")
    self.res_f = open(os.path.join(out_dir, "results.jsonl"), "a")
    self.records = []

  def left(self) -> float:
    """Seconds left of the budget."""
    return self.budget_s - (time.time() - self.t0)

  def log(self, *parts):
    """Prints and logs one line."""
    msg = " ".join(str(p) for p in parts)
    print(msg, flush=True)
    self.log_f.write(msg + "\n")
    self.log_f.flush()

  def record(self, **row):
    """Appends one measurement (with the wall time since the start)."""
    row["t_wall"] = round(time.time() - self.t0, 1)
    self.records.append(row)
    self.res_f.write(json.dumps(row) + "\n")
    self.res_f.flush()


def _chained(fn, sets):
  """Calls fn on each argument set in turn, each call waiting for the previous result.

  The optimization barrier ties call i+1's first argument to call i's output, so no
  part of call i (an asynchronous collective, say) can overlap call i+1: what a layer
  of a model sees, whose next layer needs this one's output.
  """
  outs, prev = [], None
  for args in sets:
    if prev is not None:
      first, _ = jax.lax.optimization_barrier((args[0], prev))
      args = (first, *args[1:])
    prev = fn(*args)
    outs.append(prev)
  return outs


# nvidia-smi showed the H200 at a 345 MHz SM clock before a run, and timings right after
# a compile scattered by up to 80 % (session 4, run 10). On the hypothesis that the clock
# needs busy time to ramp up, warm up for this long before every measurement.
WARMUP_SECONDS = 0.2


def _median_program_seconds(run, arg_sets, iters: int) -> float:
  t0, n = time.perf_counter(), 0
  while n < 2 or time.perf_counter() - t0 < WARMUP_SECONDS:
    jax.block_until_ready(run(arg_sets))
    n += 1
  ts = []
  for _ in range(iters):
    t = time.perf_counter()
    jax.block_until_ready(run(arg_sets))
    ts.append(time.perf_counter() - t)
  return statistics.median(ts)


def time_calls(fn, arg_sets, iters: int = 7, *, chain: bool = False) -> float:
  """Median seconds per call of fn over R = len(arg_sets) calls in one jit program.

  The R calls take distinct arguments (fresh activations, cycled weight copies), so
  no call reuses another's inputs from cache; warm-up runs (at least 2, at least
  WARMUP_SECONDS) come first.
  chain=False: the calls are independent, and XLA may overlap one call's asynchronous
  work (collectives) with the next call's compute — throughput of independent work.
  chain=True: each call waits for the previous one (see `_chained`) — the latency of a
  call inside a model.
  """
  if chain:
    run = jax.jit(lambda sets: _chained(fn, sets))
  else:
    run = jax.jit(lambda sets: [fn(*a) for a in sets])
  return _median_program_seconds(run, arg_sets, iters) / len(arg_sets)


def dispatch_seconds(arg_sets, iters: int = 7) -> float:
  """Median seconds of a jit program that takes the same arguments and does nothing.

  What launching a program with these buffers costs the host (argument handling,
  dispatch, one tiny kernel, the wait) — a fixed cost per program, not per call.
  """
  # keep_unused: the real program receives every buffer, so this one must too.
  run = jax.jit(lambda sets: jax.tree.leaves(sets)[0].ravel()[:1], keep_unused=True)
  return _median_program_seconds(run, arg_sets, iters)


NULL_ITERS = 15  # the null program is cheap: more runs for a steadier median


def time_calls_net(fn, arg_sets, iters: int = 7, *, chain: bool = False):
  """(raw, net) seconds per call: time_calls, and the same minus dispatch_seconds / R.

  With R calls of a few tens of µs each, the program's fixed launch cost (hundreds of µs
  for a hundred buffers) adds µs to every call: net is what the calls themselves take
  on the device, kernels and the gaps between them included. Differencing two medians
  is noisier than either (runs of the same arguments moved the subtracted cost by up to
  ±20 %): report raw beside net.
  """
  raw = time_calls(fn, arg_sets, iters, chain=chain)
  return raw, raw - dispatch_seconds(arg_sets, max(iters, NULL_ITERS)) / len(arg_sets)


def device_time_calls(fn, arg_sets, trace_dir: str | None = None, repeats: int = 2) -> dict:
  """Device time per call of fn over R = len(arg_sets) calls in one jit program, read
  from a jax.profiler trace (benchmarks/kernel_trace.py), after the same warm-up as
  time_calls.

  Returns {"busy_s": the kernels' summed durations per call, "span_s": per call from
  the first kernel to the last of each program run (gaps between kernels included),
  "kernels": {name: µs per call}}. Both exclude the host's cost of dispatching a
  program, which the wall-clock timers include and which at M <= 16 can exceed the
  kernels themselves. Empty kernels (and zeros) where no device process is traced.
  The trace is written to trace_dir, or to a temporary directory removed afterwards.
  """
  from benchmarks import kernel_trace  # pylint: disable=g-import-not-at-top
  run = jax.jit(lambda sets: [fn(*a) for a in sets])
  _median_program_seconds(run, arg_sets, 1)  # compile and warm up
  with tempfile.TemporaryDirectory() as tmp:
    path = kernel_trace.trace_programs(run, (arg_sets,), trace_dir or tmp, repeats)
    summary = kernel_trace.kernel_summary(path)
  calls = len(arg_sets) * repeats
  if not summary:
    return {"busy_s": 0.0, "span_s": 0.0, "kernels": {}}
  s = next(iter(summary.values()))
  return {"busy_s": s["busy_us"] / calls * 1e-6, "span_s": s["program_span_us"] / calls * 1e-6,
          "kernels": {k: total / calls for k, (_, total) in s["kernels"].items()}}
