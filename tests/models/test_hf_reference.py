"""The float32 model against Hugging Face transformers (stored references).

The references come from ``make_hf_reference.py`` (torch + transformers, run in a
separate environment); these tests need only numpy and sharq_jax.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

import tiny_weights
from sharq_jax import loaders, models

DATA = os.path.join(os.path.dirname(__file__), "data")
# float32 agreement: max |Δlogit| relative to the largest |logit|.
F32_TOL = 2e-5


def _logits(model, ids):
  return np.asarray(jax.jit(lambda m, x: m(x))(model, jnp.asarray(ids)[None]))[0]


def _rel_err(got, want):
  return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


@pytest.fixture(scope="module")
def tiny_ref():
  return np.load(os.path.join(DATA, "tiny_hf_reference.npz"))


@pytest.mark.parametrize("name", sorted(tiny_weights.TINY_CONFIGS))
def test_tiny_hf_folder_matches_transformers(name, tiny_ref, tmp_path):
  """config.json + safetensors written here, read by the HF loader, run in f32."""
  hf_config = json.loads(str(tiny_ref[f"{name}/config"]))
  with open(tmp_path / "config.json", "w") as f:
    json.dump(hf_config, f)
  cfg = models.from_hf_config(hf_config)
  tensors = {k: tiny_weights.tensor(k, shape)
             for k, shape in models.expected_shapes(cfg).items()}
  save_file(tensors, str(tmp_path / "model.safetensors"))
  model = loaders.read_hf_dir(tmp_path).to_model(jnp.float32)
  got = _logits(model, tiny_ref[f"{name}/tokens"])
  assert _rel_err(got, tiny_ref[f"{name}/logits"]) < F32_TOL


def test_tiny_configs_cover_the_variants(tiny_ref):
  cfgs = {n: models.from_hf_config(json.loads(str(tiny_ref[f"{n}/config"])))
          for n in tiny_weights.TINY_CONFIGS}
  assert cfgs["llama3"].rope_scaling == models.Llama3RopeScaling(8.0, 1.0, 4.0, 64)
  assert cfgs["qwen2"].qkv_bias and not cfgs["qwen2"].o_bias
  assert cfgs["qwen2"].tie_word_embeddings
  assert cfgs["qwen3"].qk_norm and cfgs["qwen3"].head_dim == 16


@pytest.fixture(scope="module")
def smollm2_ref():
  return np.load(os.path.join(DATA, "smollm2_hf_reference.npz"))


def test_smollm2_float32_matches_transformers(smollm2, smollm2_ref):
  ref = smollm2_ref
  logits = _logits(smollm2.to_model(jnp.float32), ref["tokens"])
  assert _rel_err(logits[:, ref["cols"]], ref["logits_cols"]) < F32_TOL
  top = np.take_along_axis(logits, ref["top_ids"], axis=-1)
  assert _rel_err(top, ref["top_logits"]) < F32_TOL
  lse = jax.nn.logsumexp(logits, axis=-1)
  np.testing.assert_allclose(lse, ref["logsumexp"], rtol=F32_TOL)
  np.testing.assert_array_equal(np.argmax(logits, -1), ref["top_ids"][:, 0])


def test_smollm2_bfloat16_is_close(smollm2, smollm2_ref):
  ref = smollm2_ref
  model = smollm2.to_model(jnp.bfloat16)
  assert model.embed_tokens.weight.dtype == jnp.bfloat16
  logits = _logits(model, ref["tokens"])
  assert logits.dtype == np.float32
  err = _rel_err(logits[:, ref["cols"]], ref["logits_cols"])
  assert F32_TOL < err < 0.05  # really bf16, and still the same model
  agree = np.mean(np.argmax(logits, -1) == ref["top_ids"][:, 0])
  assert agree >= 0.9


def test_smollm2_tokenizer_matches_transformers(smollm2, smollm2_ref):
  texts = json.loads(str(smollm2_ref["tok_texts"]))
  np.testing.assert_array_equal(smollm2.tokenizer.encode(texts[0]),
                                smollm2_ref["tokens"])
  for i, text in enumerate(texts):
    ids = smollm2.tokenizer.encode(text)
    np.testing.assert_array_equal(ids, smollm2_ref[f"tok_{i}"], err_msg=text)
    assert smollm2.tokenizer.decode(ids) == text
