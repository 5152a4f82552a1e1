"""Device-side kernel durations from a jax.profiler trace (Nsight Compute crashed on the
device in session 3, so this is how a decode call is split into kernels).

`trace_programs` runs a jitted program under `jax.profiler.trace(...,
create_perfetto_trace=True)`; `kernel_summary` reads the Perfetto JSON it writes and sums
the complete ("X") events of the device processes — those whose process name contains
"GPU" — per kernel name. Against the wall time per call this separates what the kernels
take on the device from what launching them costs the host.

Under the profiler XLA launches kernels one by one (no CUDA graphs). The busy time sums
the kernels' durations; the in-program span runs from the first kernel to the last of
each program run, gaps included — it can be below busy where kernels overlap.
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os

import jax


def _events(path: str) -> list:
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rt") as f:
    data = json.load(f)
  return data["traceEvents"] if isinstance(data, dict) else data


def process_names(path: str) -> list:
  """The process names of a Perfetto trace (to see what a device is called in it)."""
  return [e.get("args", {}).get("name", "") for e in _events(path)
          if e.get("ph") == "M" and e.get("name") == "process_name"]


def kernel_summary(path: str, device_marker: str = "GPU") -> dict:
  """Per device process of a Perfetto trace: kernel name → (count, total µs), and the
  busy span (first start to last end, µs) and the summed durations.

  Returns {process name: {"kernels": {name: (count, total_us)}, "busy_us": float,
  "span_us": float, "program_span_us": float}} for every process whose name contains
  device_marker; span_us runs over the whole trace, program_span_us sums the spans of
  the program runs (`_program_span`).
  """
  events = _events(path)
  names = {e["pid"]: e.get("args", {}).get("name", "") for e in events
           if e.get("ph") == "M" and e.get("name") == "process_name"}
  out = {}
  for pid, pname in names.items():
    if device_marker not in pname:
      continue
    xs = [e for e in events if e.get("pid") == pid and e.get("ph") == "X" and "dur" in e]
    if not xs:
      continue
    kernels = collections.defaultdict(lambda: [0, 0.0])
    for e in xs:
      kernels[e["name"]][0] += 1
      kernels[e["name"]][1] += float(e["dur"])
    start = min(float(e["ts"]) for e in xs)
    end = max(float(e["ts"]) + float(e["dur"]) for e in xs)
    out[pname] = {"kernels": {k: tuple(v) for k, v in kernels.items()},
                  "busy_us": sum(float(e["dur"]) for e in xs), "span_us": end - start,
                  "program_span_us": _program_span(xs)}
  return out


# Kernels of one program run follow each other within microseconds; between two runs
# the host waits for the result and dispatches the next program (hundreds of µs).
PROGRAM_GAP_US = 50.0


def _program_span(xs) -> float:
  """Σ over program runs of (last kernel end − first kernel start): the device time of
  the runs, launch gaps between their kernels included, the host's pauses between runs
  excluded. Runs are told apart by idle gaps longer than PROGRAM_GAP_US."""
  spans = sorted((float(e["ts"]), float(e["ts"]) + float(e["dur"])) for e in xs)
  total, (start, end) = 0.0, spans[0]
  for a, b in spans[1:]:
    if a - end > PROGRAM_GAP_US:
      total += end - start
      start = a
    end = max(end, b)
  return total + end - start


def trace_programs(run, args, out_dir: str, repeats: int = 3) -> str:
  """Runs run(*args) `repeats` times under the profiler; returns the Perfetto trace path."""
  jax.block_until_ready(run(*args))  # compiled and warm outside the trace
  with jax.profiler.trace(out_dir, create_perfetto_trace=True):
    for _ in range(repeats):
      jax.block_until_ready(run(*args))
  paths = sorted(glob.glob(os.path.join(out_dir, "**", "perfetto_trace.json.gz"),
                           recursive=True), key=os.path.getmtime)
  if not paths:
    raise FileNotFoundError(f"no perfetto_trace.json.gz under {out_dir}")
  return paths[-1]


def format_summary(summary: dict, calls: int) -> str:
  """Lines per device process: each kernel's count and µs per call, busiest first."""
  lines = []
  for pname, s in summary.items():
    lines.append(f"{pname}: busy {s['busy_us'] / calls:.1f} us per call, in-program span "
                 f"{s['program_span_us'] / calls:.1f} us, whole span "
                 f"{s['span_us'] / calls:.1f} us per call")
    for name, (count, total) in sorted(s["kernels"].items(), key=lambda kv: -kv[1][1]):
      lines.append(f"  {total / calls:8.2f} us/call  x{count / calls:.2f}  {name[:100]}")
  return "\n".join(lines)
