"""Tensor-level SQNR of every registry method on synthetic heavy-tailed activations.

Variants: `configs/tensor_error.py` (default, 512×4096), `:smoke` (tiny, for CI).
"""

import ml_collections

from sharq_jax.methods import METHODS


def get_config(arg: str = "default"):
  """Config for experiments/tensor_error.py; arg is 'default' or 'smoke'."""
  config = ml_collections.ConfigDict()
  config.experiment = "tensor_error"
  config.name = "tensor_error" + ("" if arg in ("", "default") else f"_{arg}")
  config.seed = 0
  config.tokens = 512
  config.k = 4096
  config.n = 1024
  config.outlier_channels = 8
  config.outlier_scale = 30.0
  config.spike_prob = 1e-4
  config.methods = tuple(METHODS)
  if arg == "smoke":
    config.tokens, config.k, config.n = 16, 256, 64
  elif arg not in ("", "default"):
    raise ValueError(f"unknown variant {arg!r}: use 'default' or 'smoke'")
  return config
