"""benchmarks/bench_tp_mlp.py itself runs end to end (CPU smoke mode: tiny shapes,
interpret-mode kernels, 2 simulated devices) and writes its results and table."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_smoke_run_writes_checks_and_table(tmp_path):
  # Two simulated devices, with the long collective timeouts of tests/conftest.py (one
  # device may reach a collective late on a loaded 2-core machine).
  flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_force_host_platform_device_count")]
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=" ".join(flags + ["--xla_force_host_platform_device_count=2"]))
  subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench_tp_mlp.py"),
                  "--smoke", "--ms", "16", "--sections", "check,collectives,time",
                  "--out", str(tmp_path)], check=True, env=env, cwd=ROOT, timeout=600)
  rows = [json.loads(line) for line in open(tmp_path / "results.jsonl")]
  checks = [r for r in rows if r["section"] == "check"]
  assert {(r["linear"], r["layout"]) for r in checks} == {
      ("sharq-nvfp4", "tp"), ("sharq-nvfp4", "sp-bf16"), ("sharq-nvfp4", "sp-packed"),
      ("bf16", "tp"), ("bf16", "sp-bf16")}
  packed = [r for r in checks if r["layout"] == "sp-packed"]
  assert packed[0]["neq_vs_sp_bf16"] == 0
  assert all(r["rel_err_vs_tp1"] < 1e-3 for r in checks)
  assert any(r["section"] == "collective" and r["chained"] for r in rows)
  timed = [r for r in rows if r["section"] == "time"]
  assert {(r["tp"], r["layout"]) for r in timed if r["linear"] == "sharq-nvfp4"} == {
      (1, "tp"), (2, "tp"), (2, "sp-bf16"), (2, "sp-packed")}
  assert all(r["chained"] and r["t_us"] > 0 for r in timed)
  assert (tmp_path / "tp_mlp.md").exists()
