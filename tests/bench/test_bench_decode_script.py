"""benchmarks/bench_decode.py itself runs end to end (CPU smoke mode: tiny shapes,
interpret-mode kernels) and writes its records and table."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_smoke_run_writes_the_decode_table(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench_decode.py"),
                  "--smoke", "--sections", "linear", "--ms", "1", "--seed", "3",
                  "--timer", "device", "--out", str(tmp_path)],
                 check=True, env=env, cwd=ROOT, timeout=600)
  rows = [json.loads(line) for line in open(tmp_path / "results.jsonl")]
  assert any(r["section"] == "env" and r.get("seed") == 3 for r in rows)
  [row] = [r for r in rows if r["section"] == "linear"]
  assert row["m"] == 1 and row["impl"] == "mma_gemv"  # AUTO's pick at M = 1
  # and the other small-M kernels timed beside it
  # The CPU trace has no device process: the device timer falls back to the wall clock
  # (net in the table, raw beside it) and says so.
  assert row["timer"] == "net"
  for name in ("bf16", "sharq_exact", "sharq_fast", "gemm", "gemm_packed", "gemm_gemv", "prep",
               "prep_kernel_amax", "prep_xla_amax"):
    assert row[name + "_raw_us"] > 0, name
  table = (tmp_path / "decode.md").read_text()
  assert table.startswith("| K×N |") and "| 256×64 | 1 |" in table
