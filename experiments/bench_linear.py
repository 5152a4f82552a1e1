"""SharQ linear layers against XLA baselines on the GPU (benchmarks/bench_linear.py).

Runs the benchmark script's sections in this process with the config's settings, then
writes the linear, decoder and prep tables (JSON, CSV, Markdown) and a plot of the
speedup over XLA bf16 against M. The raw log and every record stay in `out_dir/raw/`.
"""

from __future__ import annotations

import os

import jax

from experiments import results

LINEAR_COLUMNS = ["k", "n", "m", "impl", "weight_layout", "sharq_exact_timer", "bf16_us",
                  "fp8_us", "nvfp4_sdg_us", "sharq_exact_us", "sharq_fast_us",
                  "gemm_exact_us", "prep_exact_us", "sharq_exact_speedup_vs_bf16",
                  "sharq_fast_speedup_vs_bf16", "sharq_exact_speedup_vs_sdg",
                  "gemm_payload_tbs", "floor_bf16_us", "floor_sharq_us"]
DECODER_COLUMNS = ["batch", "layers", "ctx", "weight_layout", "bf16_us", "sharq_exact_us",
                   "sharq_fast_us", "sharq_exact_speedup", "sharq_fast_speedup",
                   "bf16_busy_us", "sharq_exact_busy_us", "sharq_fast_busy_us"]
PREP_COLUMNS = ["m", "k", "rms", "mode", "timer", "t_us", "tbs", "frac_copy"]
DECODE_TARGET = 3.0  # issue 4: decode linear >= 3x XLA bf16


def script_argv(config, raw_dir: str) -> list[str]:
  """benchmarks/bench_linear.py's command line for `config`."""
  argv = ["--out", raw_dir, "--budget_s", str(config.budget_s),
          "--sections", ",".join(config.sections),
          "--ms", ",".join(str(m) for m in config.ms),
          "--shapes", ",".join(config.shapes),
          "--decoder_batches", ",".join(str(b) for b in config.decoder_batches),
          "--linear_timer", config.linear_timer,
          "--weight_layout", config.weight_layout]
  return argv + (["--smoke"] if config.smoke else [])


def _with_busy_speedups(row: dict) -> dict:
  """Adds the decoder's device-busy ratios (bf16 busy / SharQ busy) when traced."""
  row = dict(row)
  for mode in ("exact", "fast"):
    if row.get("bf16_busy_us") and row.get(f"sharq_{mode}_busy_us"):
      row[f"sharq_{mode}_busy_speedup"] = row["bf16_busy_us"] / row[f"sharq_{mode}_busy_us"]
  return row


def speedup_series(rows: list[dict]) -> dict[str, tuple[list[int], list[float]]]:
  """`K×N mode -> (Ms, speedups over bf16)` from the linear rows, M ascending."""
  series = {}
  for mode in ("exact", "fast"):
    for k, n in sorted({(r["k"], r["n"]) for r in rows}):
      pts = sorted((r["m"], r[f"sharq_{mode}_speedup_vs_bf16"]) for r in rows
                   if (r["k"], r["n"]) == (k, n) and r.get(f"sharq_{mode}_speedup_vs_bf16"))
      if pts:
        series[f"{k}x{n} {mode}"] = ([m for m, _ in pts], [s for _, s in pts])
  return series


def run(config, out_dir: str) -> dict[str, list[dict]]:
  """Runs the benchmark; returns its rows by section ("linear", "decoder", "prep")."""
  backend = jax.default_backend()
  if not config.smoke and backend != "gpu":
    raise RuntimeError(
        f"bench_linear times the Pallas GPU kernels, but JAX's default backend here is "
        f"{backend!r}. Run it on an NVIDIA GPU, or use configs/bench_linear.py:smoke "
        f"(interpret mode, tiny shapes) to exercise it on a CPU.")
  # Imported here: the script sets up sharq_jax.kernels for a plain checkout and pulls
  # in the profiler-trace helpers, which the other experiments do not need.
  from benchmarks import bench_linear  # pylint: disable=g-import-not-at-top

  raw_dir = os.path.join(out_dir, "raw")
  os.makedirs(raw_dir, exist_ok=True)
  for name in ("log.txt", "results.jsonl"):  # the script appends; keep one run's records
    if os.path.exists(os.path.join(raw_dir, name)):
      os.remove(os.path.join(raw_dir, name))
  records = bench_linear.main(script_argv(config, raw_dir))
  by_section = {
      "linear": [r for r in records if r["section"] == "linear"],
      "decoder": [_with_busy_speedups(r) for r in records if r["section"] == "decoder"],
      "prep": [r for r in records if r["section"] == "prep"],
  }
  columns = dict(linear=LINEAR_COLUMNS,
                 decoder=DECODER_COLUMNS + ["sharq_exact_busy_speedup",
                                            "sharq_fast_busy_speedup"],
                 prep=PREP_COLUMNS)
  for section, rows in by_section.items():
    if rows:
      print(results.format_table(rows, columns[section]))
      paths = results.save(out_dir, f"bench_linear_{section}", rows, columns[section],
                           config.to_dict())
      print("wrote", paths["json"], paths["csv"], paths["md"])
  png = results.line_plot(
      os.path.join(out_dir, "bench_linear_speedup.png"), speedup_series(by_section["linear"]),
      xlabel="M (tokens)", ylabel="speedup over XLA bf16 jnp.dot (higher is better)",
      title=f"SharQ-NVFP4 linear, {jax.devices()[0].device_kind}", logx=True,
      references=[(1.0, "bf16"), (DECODE_TARGET, "decode target")])
  if png:
    print("wrote", png)
  print("raw log and records:", raw_dir)
  return by_section
