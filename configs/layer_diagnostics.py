"""Per-layer input/output SQNR of SmolLM2-135M's quantized linears under each method.

Variants: default (one 256-token window of Python's docs), smoke (two methods, 32
tokens). Override --config.model / --config.text / --config.text_path as in smollm2.py.
"""

import ml_collections


def get_config(arg: str = "default"):
  """Config for experiments/layer_diagnostics.py."""
  variant = arg or "default"
  config = ml_collections.ConfigDict()
  config.experiment = "layer_diagnostics"
  config.name = "layer_diagnostics" + ("" if variant == "default" else f"_{variant}")
  config.model = "smollm2-135m"
  config.dtype = "bfloat16"
  config.text = "python-docs"
  config.text_path = ""
  config.seq_len = 256
  config.methods = ("nvfp4", "sharq-nvfp4", "mxfp4", "sharq-mxfp4", "hif4", "sharq-hif4")
  if variant == "smoke":
    config.seq_len, config.methods = 32, ("nvfp4", "sharq-nvfp4")
  elif variant != "default":
    raise ValueError(f"unknown variant {variant!r}: default or smoke")
  return config
