"""Name → experiment function table used by `python -m experiments.run`."""

from __future__ import annotations

import importlib
from typing import Callable

# Each entry names a module with a `run(config, out_dir)` function; modules are imported
# on use so that one experiment's optional dependencies never block another.
EXPERIMENTS: dict[str, str] = {
    "tensor_error": "experiments.tensor_error",
    "model_eval": "experiments.model_eval",
    "layer_diagnostics": "experiments.layer_diagnostics",
    "bench_linear": "experiments.bench_linear",
}


def get_experiment(name: str) -> Callable:
  """The `run(config, out_dir)` function of experiment `name`."""
  if name not in EXPERIMENTS:
    raise ValueError(f"unknown experiment {name!r}; known: {sorted(EXPERIMENTS)}")
  return importlib.import_module(EXPERIMENTS[name]).run
