"""What every benchmark script shares: a log + JSON-lines recorder with a time budget,
and the timing loop (R calls inside one jit program, warm-up, median)."""

from __future__ import annotations

import json
import os
import statistics
import time

import jax


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


def time_calls(fn, arg_sets, iters: int = 7, *, chain: bool = False) -> float:
  """Median seconds per call of fn over R = len(arg_sets) calls in one jit program.

  The R calls take distinct arguments (fresh activations, cycled weight copies), so
  no call reuses another's inputs from cache; 2 warm-up runs (1 when R ≥ 8) come first.
  chain=False: the calls are independent, and XLA may overlap one call's asynchronous
  work (collectives) with the next call's compute — throughput of independent work.
  chain=True: each call waits for the previous one (see `_chained`) — the latency of a
  call inside a model.
  """
  if chain:
    run = jax.jit(lambda sets: _chained(fn, sets))
  else:
    run = jax.jit(lambda sets: [fn(*a) for a in sets])
  for _ in range(2 if len(arg_sets) < 8 else 1):
    jax.block_until_ready(run(arg_sets))
  ts = []
  for _ in range(iters):
    t = time.perf_counter()
    jax.block_until_ready(run(arg_sets))
    ts.append(time.perf_counter() - t)
  return statistics.median(ts) / len(arg_sets)
