"""benchmarks/bench_prep.py itself runs end to end (CPU smoke mode: tiny shapes,
interpret-mode kernels) and records its checks and timings."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_smoke_run_records_checks_and_times(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench_prep.py"),
                  "--smoke", "--sections", "numerics,check,time", "--out", str(tmp_path)],
                 check=True, env=env, cwd=ROOT, timeout=600)
  with open(tmp_path / "results.jsonl") as f:
    rows = [json.loads(line) for line in f]
  assert not [r for r in rows if r["section"] == "numerics"]  # GPU instructions only
  checks = [r for r in rows if r["section"] == "check"]
  # RMSNorm or not x (2 modes x 3 float16 layouts + exact mode's INT8), all equal to
  # the contract
  assert len(checks) == 14 and all(r["ok"] and r["mismatches"] == 0 and
                                    r["signed_zero_neq"] == 0 for r in checks)
  whats = {(r["mode"], r["what"]) for r in rows if r["section"] == "time"}
  assert whats == {("exact", w) for w in ("copy", "amax pass", "kernel", "sharq_prep")}
