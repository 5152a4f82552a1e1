"""configs/bench_linear.py and experiments/bench_linear.py: the benchmark experiment
runs end to end on a CPU in smoke mode (interpret-mode kernels, tiny shapes), refuses
to time anything on a non-GPU backend otherwise, and writes its tables."""

import json

import jax
import pytest

from configs import bench_linear as bench_linear_config
from experiments import bench_linear, registry


def test_smoke_linear_writes_tables_with_roofline_floors(tmp_path):
  config = bench_linear_config.get_config("smoke")
  config.sections = ("ceilings", "linear")
  config.ms = (1,)
  out = registry.get_experiment("bench_linear")(config, str(tmp_path))
  [row] = out["linear"]
  assert (row["k"], row["n"], row["m"]) == (256, 128, 1)
  for name in ("bf16", "fp8", "sharq_exact", "sharq_fast", "gemm_exact", "prep_exact"):
    assert row[name + "_us"] > 0, name
  assert row["sharq_exact_speedup_vs_bf16"] == pytest.approx(
      row["bf16_us"] / row["sharq_exact_us"])
  records = [json.loads(line) for line in open(tmp_path / "raw" / "results.jsonl")]
  [ceil] = [r for r in records if r["section"] == "ceilings"]
  # bf16 weight bytes (128·256·2) at the measured read rate, or the FLOPs at the bf16 rate
  assert row["floor_bf16_us"] == pytest.approx(
      1e6 * max(128 * 256 * 2 / ceil["hbm_read"], 2 * 128 * 256 / ceil["bf16_flops"]))
  assert row["floor_sharq_us"] < row["floor_bf16_us"]  # 0.53 byte per weight against 2
  table = (tmp_path / "bench_linear_linear.md").read_text()
  assert table.startswith("| k | n | m |") and "| 256 | 128 | 1 |" in table
  saved = json.load(open(tmp_path / "bench_linear_linear.json"))
  assert saved["config"]["smoke"] is True and len(saved["rows"]) == 1


def test_timing_on_a_cpu_backend_raises_and_names_the_smoke_variant(tmp_path):
  if jax.default_backend() == "gpu":
    pytest.skip("this machine has a GPU")
  with pytest.raises(RuntimeError, match="bench_linear.py:smoke"):
    bench_linear.run(bench_linear_config.get_config("decode"), str(tmp_path))
  assert not (tmp_path / "raw").exists()  # nothing started


def test_speedup_series_orders_points_by_m_per_shape_and_mode():
  rows = [dict(k=64, n=32, m=16, sharq_exact_speedup_vs_bf16=0.5,
               sharq_fast_speedup_vs_bf16=0.9),
          dict(k=64, n=32, m=1, sharq_exact_speedup_vs_bf16=1.5,
               sharq_fast_speedup_vs_bf16=None),
          dict(k=32, n=64, m=4, sharq_exact_speedup_vs_bf16=1.1)]
  series = bench_linear.speedup_series(rows)
  assert series == {"32x64 exact": ([4], [1.1]), "64x32 exact": ([1, 16], [1.5, 0.5]),
                    "64x32 fast": ([16], [0.9])}


def test_default_shapes_and_ms_are_the_kernels_specs():
  from sharq_jax.kernels.sharq_matmul import specs  # pylint: disable=g-import-not-at-top
  config = bench_linear_config.get_config()
  assert config.shapes == tuple(f"{k}x{n}" for k, n in specs.LLAMA31_8B_SHAPES)
  assert config.ms == specs.BENCH_MS


def test_variants_and_script_command_line():
  config = bench_linear_config.get_config("decode")
  argv = bench_linear.script_argv(config, "/tmp/x")
  assert argv[argv.index("--ms") + 1] == "1,2,4,16"
  assert argv[argv.index("--shapes") + 1] == "4096x14336,14336x4096"
  assert argv[argv.index("--weight_layout") + 1] == "tiles_64"
  assert "--smoke" not in argv
  assert "--smoke" in bench_linear.script_argv(bench_linear_config.get_config("smoke"), "/x")
  with pytest.raises(ValueError, match="unknown variant"):
    bench_linear_config.get_config("fast")


@pytest.mark.parametrize("busy_s", [1e-3, 0.0])
def test_ceilings_take_the_device_clock_when_asked_and_traced(tmp_path, monkeypatch, busy_s):
  from benchmarks import bench_linear as script  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(script, "CEIL_N", 1 << 12)
  monkeypatch.setattr(script, "CEIL_MM", 64)
  monkeypatch.setattr(script, "LINEAR_DEVICE_TIMER", True)
  # busy 0 is what a trace without a device process (a CPU) gives: the wall clock then
  monkeypatch.setattr(script.harness, "device_time_calls",
                      lambda fn, sets: {"busy_s": busy_s, "span_s": busy_s, "kernels": {}})
  b = script.Bench(str(tmp_path), 60)
  script.sec_ceilings(b)
  if busy_s:
    assert b.ceil["timer"] == "device"
    assert b.ceil["hbm_read"] == pytest.approx((1 << 12) * 2 / busy_s)
    assert b.ceil["hbm_copy"] == pytest.approx((1 << 12) * 4 / busy_s)
    assert b.ceil["bf16_flops"] == pytest.approx(2 * 64**3 / busy_s)
  else:
    assert b.ceil["timer"] == "wall"
    assert 0 < b.ceil["hbm_read"] < float("inf")


def test_prep_section_takes_the_same_clock_as_the_ceilings(tmp_path, monkeypatch):
  from benchmarks import bench_linear as script  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(script, "CEIL_N", 1 << 12)
  monkeypatch.setattr(script, "CEIL_MM", 64)
  monkeypatch.setattr(script, "PREP_KS", (256,))
  monkeypatch.setattr(script, "PREP_MS", (16,))
  monkeypatch.setattr(script, "n_calls", lambda m: 2)
  monkeypatch.setattr(script, "LINEAR_DEVICE_TIMER", True)
  monkeypatch.setattr(script.harness, "device_time_calls",
                      lambda fn, sets: {"busy_s": 2e-6, "span_s": 2e-6, "kernels": {}})
  b = script.Bench(str(tmp_path), 60)
  script.sec_ceilings(b)
  script.sec_prep(b)
  rows = [r for r in b.records if r["section"] == "prep"]
  assert len(rows) == 4  # rms off/on × exact/fast
  for r in rows:
    paths = 2 if r["mode"] == "exact" else 1
    nbytes = 16 * 256 * (2 + 2 + 2 * paths)  # stats read, read, one float16 plane per path
    assert r["timer"] == "device" and r["t_us"] == pytest.approx(2.0)
    assert r["frac_copy"] == pytest.approx((nbytes / 2e-6) / ((1 << 12) * 4 / 2e-6))
