"""SmolLM2-135M (embedded GGUF) under the paper's methods: perplexity and gap recovery.

Variants (`--config=configs/smollm2.py:<variant>`):
  default     Python's docs text (embedded), 3 windows of 2048: the README's main job,
              minutes on 2 CPU cores.
  full        WikiText-2 test at 2048 context, all windows; pass the file with
              --config.text_path=/path/to/wikitext-2-raw/wiki.test.raw.
  ablations   the §2.6 ablations of sharq-nvfp4 on the default text.
  smoke       2 methods, one 128-token window (CI).
Common overrides: --config.max_windows=24, --config.dtype=float32,
--config.mesh.dp=2 --config.mesh.tp=3 (sharded; see README), --config.model=/hf/dir.
"""

import ml_collections

MAIN_METHODS = ["bf16", "nvfp4", "sharq-nvfp4", "mxfp4", "sharq-mxfp4", "hif4", "sharq-hif4"]
ABLATIONS = ["bf16", "nvfp4", "sharq-nvfp4", "dense-dense-nvfp4", "sparse-sparse-nvfp4",
             "sparse-only-nvfp4", "sharq-nvfp4-raw-residual", "prune-nvfp4"]
DEFAULT_WIKITEXT = "../shared/data/wikitext-2-raw/wiki.test.raw"


def get_config(arg: str = "default"):
  """Config for experiments/model_eval.py."""
  variant = arg or "default"
  config = ml_collections.ConfigDict()
  config.experiment = "model_eval"
  config.name = "smollm2" + ("" if variant == "default" else f"_{variant}")
  config.model = "smollm2-135m"
  config.dtype = "bfloat16"
  config.text = "python-docs"
  config.text_path = ""
  config.seq_len = 2048
  config.max_windows = 3
  config.batch_size = 1
  config.methods = tuple(MAIN_METHODS)
  config.tasks = ()  # e.g. (dict(name="arc_easy", path="ARC-Easy-Test.jsonl"),)
  config.mesh = ml_collections.ConfigDict(dict(dp=1, tp=1))
  if variant == "full":
    config.text, config.text_path = "wikitext2", DEFAULT_WIKITEXT
    config.max_windows = ml_collections.FieldReference(None, field_type=int)
  elif variant == "ablations":
    config.methods = tuple(ABLATIONS)
  elif variant == "smoke":
    config.methods, config.seq_len, config.max_windows = ("bf16", "sharq-nvfp4"), 128, 1
  elif variant != "default":
    raise ValueError(f"unknown variant {variant!r}: default, full, ablations or smoke")
  return config
