"""benchmarks/kernel_trace.py: the summary of a hand-written Perfetto trace, and a real
(CPU) profiler trace read back."""

import gzip
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from benchmarks import kernel_trace  # noqa: E402


def test_summary_of_a_hand_written_trace(tmp_path):
  events = [
      {"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "/host:CPU"}},
      {"ph": "M", "name": "process_name", "pid": 7, "args": {"name": "/device:GPU:0"}},
      {"ph": "X", "pid": 1, "tid": 1, "ts": 0.0, "dur": 500.0, "name": "host work"},
      {"ph": "X", "pid": 7, "tid": 2, "ts": 10.0, "dur": 4.0, "name": "sharq_prep"},
      {"ph": "X", "pid": 7, "tid": 2, "ts": 30.0, "dur": 20.0, "name": "sharq_gemv"},
      {"ph": "X", "pid": 7, "tid": 2, "ts": 60.0, "dur": 6.0, "name": "sharq_prep"},
      {"ph": "i", "pid": 7, "tid": 2, "ts": 70.0, "name": "marker without duration"},
      {"ph": "X", "pid": 7, "tid": 2, "ts": 400.0, "dur": 5.0, "name": "sharq_prep"},
      {"ph": "X", "pid": 7, "tid": 2, "ts": 407.0, "dur": 3.0, "name": "sharq_gemv"},
  ]
  path = tmp_path / "t.json.gz"
  with gzip.open(path, "wt") as f:
    json.dump({"traceEvents": events}, f)
  s = kernel_trace.kernel_summary(str(path))
  assert list(s) == ["/device:GPU:0"]
  assert kernel_trace.process_names(str(path)) == ["/host:CPU", "/device:GPU:0"]
  gpu = s["/device:GPU:0"]
  assert gpu["kernels"] == {"sharq_prep": (3, 15.0), "sharq_gemv": (2, 23.0)}
  assert gpu["busy_us"] == 38.0 and gpu["span_us"] == 400.0  # 10 .. 410
  # Two program runs (334 µs apart): 10 .. 66 and 400 .. 410.
  assert gpu["program_span_us"] == 66.0
  text = kernel_trace.format_summary(s, calls=2)
  assert "busy 19.0 us per call, in-program span 33.0 us" in text
  assert text.index("sharq_gemv") < text.index("sharq_prep")


def test_a_real_trace_is_written_and_read(tmp_path):
  f = jax.jit(lambda x: jnp.sin(x) @ x)
  path = kernel_trace.trace_programs(f, (jnp.ones((64, 64)),), str(tmp_path), repeats=2)
  assert path.endswith("perfetto_trace.json.gz")
  # On the CPU no process is a GPU; with the host marker the trace has timed events.
  if jax.default_backend() == "cpu":
    assert kernel_trace.kernel_summary(path) == {}
  host = kernel_trace.kernel_summary(path, device_marker="")
  assert any(s["busy_us"] > 0 for s in host.values())


def test_profile_decode_smoke_writes_traces(tmp_path):
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  out = subprocess.run(
      [sys.executable, os.path.join(root, "benchmarks", "profile_decode.py"), "--m", "1",
       "--smoke", "--trace", str(tmp_path)], capture_output=True, text=True, check=True,
      timeout=600).stdout
  assert out.count("[wall]") == 2 and out.count("[trace]") == 2
  if jax.default_backend() == "cpu":
    assert "no device process" in out  # the CPU has none
  assert len(list(tmp_path.glob("**/perfetto_trace.json.gz"))) == 2


def test_device_time_calls_divides_the_trace_by_the_calls(tmp_path, monkeypatch):
  """Per call = the trace's sums / (R calls x repeats), from the device process."""
  from benchmarks import harness  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(harness, "WARMUP_SECONDS", 0.0)
  events = [
      {"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "/host:CPU"}},
      {"ph": "X", "pid": 1, "tid": 1, "ts": 0.0, "dur": 900.0, "name": "host work"},
      {"ph": "M", "name": "process_name", "pid": 7, "args": {"name": "/device:GPU:0"}},
      {"ph": "X", "pid": 7, "tid": 2, "ts": 10.0, "dur": 4.0, "name": "k_a"},
      {"ph": "X", "pid": 7, "tid": 2, "ts": 16.0, "dur": 8.0, "name": "k_b"},
      {"ph": "X", "pid": 7, "tid": 2, "ts": 500.0, "dur": 4.0, "name": "k_a"},
      {"ph": "X", "pid": 7, "tid": 2, "ts": 506.0, "dur": 8.0, "name": "k_b"},
  ]
  path = tmp_path / "t.json.gz"
  with gzip.open(path, "wt") as f:
    json.dump({"traceEvents": events}, f)
  monkeypatch.setattr(kernel_trace, "trace_programs", lambda *a, **k: str(path))
  # 2 calls per program, 2 program runs traced: 4 calls; busy 24 µs, spans 14 + 14 µs.
  d = harness.device_time_calls(lambda x: x + 1, [(jnp.ones(4),)] * 2, repeats=2)
  assert d["kernels"] == {"k_a": 2.0, "k_b": 4.0}
  assert abs(d["busy_s"] - 6e-6) < 1e-12 and abs(d["span_s"] - 7e-6) < 1e-12


def test_device_time_calls_reads_the_trace(monkeypatch):
  """A real (CPU or GPU) profiler trace goes through device_time_calls."""
  from benchmarks import harness  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(harness, "WARMUP_SECONDS", 0.0)
  d = harness.device_time_calls(lambda x: jnp.sin(x) @ x, [(jnp.ones((32, 32)),)] * 2)
  assert set(d) == {"busy_s", "span_s", "kernels"}
  if jax.default_backend() == "cpu":  # no device process: nothing to attribute
    assert d == {"busy_s": 0.0, "span_s": 0.0, "kernels": {}}
  else:
    assert d["busy_s"] > 0 and d["span_s"] > 0 and d["kernels"]
