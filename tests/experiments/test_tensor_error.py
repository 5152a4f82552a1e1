"""The tensor_error experiment runs end to end on its smoke config and writes results."""

import json
import math
import os

from configs import tensor_error as tensor_error_config
from experiments import registry


def test_smoke_config_writes_results(tmp_path):
  config = tensor_error_config.get_config("smoke")
  rows = registry.get_experiment("tensor_error")(config, str(tmp_path))
  for ext in ("json", "csv", "md"):
    assert os.path.exists(tmp_path / f"tensor_error.{ext}")
  saved = json.load(open(tmp_path / "tensor_error.json"))
  assert [r["method"] for r in saved["rows"]] == list(config.methods)
  by_name = {r["method"]: r for r in rows}
  assert math.isinf(by_name["bf16"]["act_sqnr_db"])
  # Every FP4 method loses information; SharQ's two paths beat its single path.
  for name in ("nvfp4", "sharq-nvfp4", "mxfp4", "hif4"):
    assert 5 < by_name[name]["act_sqnr_db"] < 60
  assert by_name["sharq-nvfp4"]["act_sqnr_db"] > by_name["nvfp4"]["act_sqnr_db"]
