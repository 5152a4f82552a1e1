"""quantize_model: which layers convert, rules, memory report, and outputs."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sharq_jax import linear, methods, models, nn
from sharq_jax.eval import perplexity as ppl

KINDS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _model(dtype=jnp.float32, tie=False, bias=True):
  cfg = models.ModelConfig(vocab_size=64, hidden_size=64, intermediate_size=128,
                           num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16,
                           qkv_bias=bias, tie_word_embeddings=tie, dtype=dtype)
  return models.CausalLM(cfg, rngs=nnx.Rngs(0))


@jax.jit
def _forward(model, tokens):
  # Jitted: eagerly, every quantized layer would compile its own sharq_dot.
  return model(tokens)


def _tokens():
  return jnp.asarray(np.random.default_rng(0).integers(0, 64, (2, 16)))


def test_every_block_linear_converted_and_nothing_else():
  model = _model()
  embed = np.asarray(model.embed_tokens.weight[...])
  head = np.asarray(model.lm_head.weight[...])
  report = nn.quantize_model(model, method="nvfp4")
  want = {f"layers.{i}.{'self_attn' if k[0] in 'qkvo' else 'mlp'}.{k}"
          for i in range(2) for k in KINDS}
  assert {p for p, _ in report.converted} == want
  assert all(m == "nvfp4" for _, m in report.converted) and not report.kept
  for block in model.layers:
    for k in KINDS:
      parent = block.self_attn if k[0] in "qkvo" else block.mlp
      assert isinstance(getattr(parent, k), nn.SharQLinear)
  assert isinstance(model.lm_head, nn.Linear)
  np.testing.assert_array_equal(model.embed_tokens.weight[...], embed)
  np.testing.assert_array_equal(model.lm_head.weight[...], head)


def test_layer_is_sharq_dot_of_the_weight_quantized_once():
  layer = _model().layers[0].self_attn.q_proj
  x = jax.random.normal(jax.random.key(1), (3, 5, 64), jnp.float32)
  q = nn.SharQLinear.from_linear(layer, "sharq-nvfp4", name="q")
  qw = methods.quantize_weight(layer.weight[...], "sharq-nvfp4")
  want = linear.sharq_dot(x, qw, bias=layer.bias[...])
  np.testing.assert_array_equal(q(x), want)
  assert q(x).dtype == x.dtype


def test_bf16_method_keeps_outputs():
  model = _model(dtype=jnp.float32)
  before = _forward(model, _tokens())
  nn.quantize_model(model, method="bf16")
  np.testing.assert_allclose(_forward(model, _tokens()), before, rtol=1e-5, atol=1e-5)


def test_quantized_model_changes_output_a_little():
  model = _model()
  before = np.asarray(_forward(model, _tokens()))
  nn.quantize_model(model, method="sharq-nvfp4")
  after = np.asarray(_forward(model, _tokens()))
  rel = np.abs(after - before).max() / np.abs(before).max()
  assert 1e-4 < rel < 0.5
  # The converted model runs jitted through the evaluation scorer.
  r = ppl.perplexity(model, np.arange(64), seq_len=32, progress=False)
  assert np.isfinite(r["ppl"])


def test_rules_first_match_wins_and_unused_reported():
  model = _model()
  rules = [nn.Rule("*.down_proj", None), nn.Rule("layers.0.*", "mxfp4"),
           nn.Rule("layers.0.mlp.down_proj", "nvfp4"), nn.Rule("lm_head", "nvfp4")]
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    report = nn.quantize_model(model, method="sharq-nvfp4", rules=rules)
  methods_by_path = dict(report.converted)
  assert report.kept == ("layers.0.mlp.down_proj", "layers.1.mlp.down_proj")
  assert isinstance(model.layers[1].mlp.down_proj, nn.Linear)
  assert methods_by_path["layers.0.self_attn.q_proj"] == "mxfp4"
  assert methods_by_path["layers.1.self_attn.q_proj"] == "sharq-nvfp4"
  # Rule 3 is shadowed by rule 1; rule 4 names a layer outside the blocks.
  assert report.unused_rules == (rules[2], rules[3])
  assert any("matched no layer" in str(w.message) for w in caught)


def test_memory_report_counts_packed_payload():
  model = _model(dtype=jnp.bfloat16, bias=False)
  report = nn.quantize_model(model, method="nvfp4")
  n_weights = 2 * (64 * 64 * 2 + 32 * 64 * 2 + 128 * 64 * 3)
  assert report.linear_bytes_before == 2 * n_weights  # bf16
  # NVFP4: 4-bit codes + one E4M3 byte per 16 values + a float32 tensor scale.
  assert report.linear_bytes_after == n_weights / 2 + n_weights / 16 + 4 * 14
  assert "MiB" in report.summary()


@pytest.mark.parametrize("tie", [False, True])
def test_tied_and_untied_heads_untouched(tie):
  model = _model(tie=tie)
  nn.quantize_model(model, method="nvfp4")
  assert (model.lm_head is None) == tie
