"""SharQ linear layers against XLA bf16, fp8 and `scaled_dot_general` NVFP4 on a GPU.

Llama-3.1-8B layer shapes; the fused prep kernel; a Llama-3.1-8B-shaped decoder step.
Runs benchmarks/bench_linear.py's sections (see BENCHMARKS.md for the method).

    python -m experiments.run --config=configs/bench_linear.py           # every section
    python -m experiments.run --config=configs/bench_linear.py:decode    # M = 1-16, decoder
    python -m experiments.run --config=configs/bench_linear.py:prefill   # M = 4096, 16384
    python -m experiments.run --config=configs/bench_linear.py:smoke     # CPU, interpret mode

Every variant but `smoke` needs an NVIDIA GPU (Hopper for the tensor-core kernels).
"""

import ml_collections

# Literal values, so that loading a config needs no kernels package (the benchmark
# device runs from a plain checkout); tests check them against sharq_matmul.specs.
LLAMA31_8B_SHAPES = ("4096x4096", "4096x1024", "4096x14336", "14336x4096")  # K x N
BENCH_MS = (1, 4, 16, 64, 256, 1024, 4096, 16384)
ALL_SECTIONS = ("ceilings", "diag", "check", "sweep", "prepsweep", "dense", "decoder",
                "linear", "prep")
BIG_SHAPES = ("4096x14336", "14336x4096")  # the decode targets' shapes
# Each variant: the fields it changes from the default.
VARIANT_OVERRIDES = {
    "default": {},
    "decode": dict(sections=("ceilings", "linear", "decoder"), ms=(1, 2, 4, 16),
                   shapes=BIG_SHAPES, decoder_batches=(1, 4), weight_layout="tiles_64",
                   budget_s=1200.0),
    "prefill": dict(sections=("ceilings", "dense", "linear", "prep"), ms=(4096, 16384),
                    budget_s=1200.0),
    "smoke": dict(sections=("ceilings", "check", "linear", "decoder"), ms=(1, 16),
                  shapes=("256x128",), decoder_batches=(1,), linear_timer="wall",
                  budget_s=600.0, smoke=True),
}
VARIANTS = tuple(VARIANT_OVERRIDES)


def get_config(arg: str = "default"):
  """Config for experiments/bench_linear.py; arg is one of VARIANTS."""
  arg = arg or "default"
  if arg not in VARIANT_OVERRIDES:
    raise ValueError(f"unknown variant {arg!r}: use one of {VARIANTS}")
  config = ml_collections.ConfigDict()
  config.experiment = "bench_linear"
  config.name = "bench_linear" + ("" if arg == "default" else f"_{arg}")
  config.sections = ALL_SECTIONS
  config.ms = BENCH_MS
  config.shapes = LLAMA31_8B_SHAPES
  config.decoder_batches = (1, 8)
  # "device": each call's kernel time from a profiler trace (no host dispatch);
  # "wall": block_until_ready around R calls.
  config.linear_timer = "device"
  # The MMA/int8 GEMVs' weight layout (sharq_matmul.WeightLayout value): tiles_64 is
  # the faster one at M = 1-4.
  config.weight_layout = "rows"
  config.budget_s = 3600.0  # sections left when the budget ends are skipped and logged
  config.smoke = False
  config.update(VARIANT_OVERRIDES[arg])
  return config
