"""Runs one experiment from a config file.

    python -m experiments.run --config=configs/tensor_error.py
    python -m experiments.run --config=configs/tensor_error.py:smoke --config.seed=3

The config's `experiment` field picks the function (experiments/registry.py); results
go to `--out_dir/<config name>` (default results/).
"""

from __future__ import annotations

import os

from absl import app, flags
from ml_collections import config_flags

from experiments import registry

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_OUT_DIR = flags.DEFINE_string("out_dir", "results", "Folder for result files.")


def main(argv):
  del argv
  config = _CONFIG.value
  if config is None:
    raise app.UsageError("--config=configs/<name>.py[:variant] is required")
  out_dir = os.path.join(_OUT_DIR.value, config.get("name", config.experiment))
  registry.get_experiment(config.experiment)(config, out_dir)


if __name__ == "__main__":
  app.run(main)
