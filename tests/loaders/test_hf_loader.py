"""Hugging Face folder loading on tiny safetensors checkpoints written here."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tokenizers
from safetensors.flax import save_file as save_jax
from safetensors.numpy import save_file

from sharq_jax import loaders, models
from sharq_jax.models import CheckpointError

HF_CONFIG = dict(
    model_type="qwen2", vocab_size=48, hidden_size=32, intermediate_size=64,
    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
    rope_theta=10000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
    bos_token_id=1, eos_token_id=[2, 3])


def _tensors(cfg_dict=HF_CONFIG, seed=0):
  cfg = models.from_hf_config(cfg_dict)
  rng = np.random.default_rng(seed)
  return {k: (rng.standard_normal(s) / 4).astype(np.float32)
          for k, s in models.expected_shapes(cfg).items()}


def _write_dir(folder, tensors, config=HF_CONFIG):
  folder.mkdir(exist_ok=True)
  (folder / "config.json").write_text(json.dumps(config))
  save_file(tensors, str(folder / "model.safetensors"))
  return folder


def _logits(model):
  return np.asarray(model(jnp.arange(8)[None] % 48))


def test_reads_config_weights_and_tokenizer(tmp_path):
  tensors = _tensors()
  folder = _write_dir(tmp_path / "m", tensors)
  tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(
      {"[UNK]": 0, "a": 1, "b": 2}, unk_token="[UNK]"))
  tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
  tok.save(str(folder / "tokenizer.json"))
  ck = loaders.read_hf_dir(folder)
  assert ck.config.qkv_bias and ck.config.tie_word_embeddings
  for k, v in tensors.items():
    np.testing.assert_array_equal(ck.tensors[k], v)
  assert ck.tokenizer.encode("a b a") == [1, 2, 1]
  assert (ck.tokenizer.bos_id, ck.tokenizer.eos_id) == (1, 2)
  model = ck.to_model(jnp.float32)
  np.testing.assert_array_equal(model.layers[1].self_attn.q_proj.bias[...],
                                tensors["model.layers.1.self_attn.q_proj.bias"])


def test_sharded_bf16_checkpoint(tmp_path):
  """Two shards with an index, bfloat16 (written by safetensors' own writer)."""
  tensors = _tensors()
  names = sorted(tensors)
  folder = tmp_path / "sharded"
  folder.mkdir()
  (folder / "config.json").write_text(json.dumps(HF_CONFIG))
  shards = {"a.safetensors": names[::2], "b.safetensors": names[1::2]}
  for fname, keys in shards.items():
    save_jax({k: jnp.asarray(tensors[k], jnp.bfloat16) for k in keys},
             str(folder / fname))
  (folder / "model.safetensors.index.json").write_text(json.dumps(
      {"weight_map": {k: f for f, ks in shards.items() for k in ks}}))
  ck = loaders.read_hf_dir(folder)
  for k, v in tensors.items():
    np.testing.assert_array_equal(np.asarray(ck.tensors[k], np.float32),
                                  np.asarray(jnp.asarray(v, jnp.bfloat16), np.float32))
  bf16 = ck.to_model(jnp.bfloat16)
  assert bf16.layers[0].mlp.up_proj.weight.dtype == jnp.bfloat16


def test_float16_and_float32_files_give_close_models(tmp_path):
  tensors = _tensors()
  m32 = loaders.read_hf_dir(_write_dir(tmp_path / "f32", tensors)).to_model(jnp.float32)
  half = {k: v.astype(np.float16) for k, v in tensors.items()}
  m16 = loaders.read_hf_dir(_write_dir(tmp_path / "f16", half)).to_model(jnp.float32)
  np.testing.assert_allclose(_logits(m16), _logits(m32), atol=2e-2)


def test_hf_config_v4_and_v5_layouts_agree():
  v4 = dict(HF_CONFIG, model_type="llama", rope_theta=500000.0,
            rope_scaling=dict(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                              original_max_position_embeddings=8192,
                              rope_type="llama3"))
  v5 = {k: v for k, v in v4.items() if k not in ("rope_theta", "rope_scaling")}
  v5["rope_parameters"] = dict(v4["rope_scaling"], rope_theta=500000.0)
  a, b = models.from_hf_config(v4), models.from_hf_config(v5)
  assert a == b
  assert a.rope_scaling.factor == 8.0 and a.rope_theta == 500000.0
  assert not a.qkv_bias  # llama: attention_bias defaults to False


def test_unsupported_model_type(tmp_path):
  folder = _write_dir(tmp_path / "m", _tensors())
  (folder / "config.json").write_text(json.dumps(dict(HF_CONFIG, model_type="gpt2")))
  with pytest.raises(CheckpointError, match=r"config\.json.*gpt2"):
    loaders.read_hf_dir(folder)


def test_missing_config(tmp_path):
  folder = _write_dir(tmp_path / "m", _tensors())
  (folder / "config.json").unlink()
  with pytest.raises(CheckpointError, match=r"config\.json: file not found"):
    loaders.read_hf_dir(folder)


def test_missing_tensor_is_named(tmp_path):
  tensors = _tensors()
  del tensors["model.layers.1.self_attn.k_proj.bias"]
  folder = _write_dir(tmp_path / "m", tensors)
  with pytest.raises(CheckpointError, match=r"model\.layers\.1\.self_attn\.k_proj\.bias"):
    loaders.read_hf_dir(folder).to_model(jnp.float32)


def test_truncated_safetensors_names_file_and_tensor(tmp_path):
  folder = _write_dir(tmp_path / "m", _tensors())
  path = folder / "model.safetensors"
  data = path.read_bytes()
  path.write_bytes(data[:len(data) - 100])
  with pytest.raises(CheckpointError, match=r"model\.safetensors: tensor '.*' is truncated"):
    loaders.read_hf_dir(folder)


@pytest.mark.parametrize("cut", [4, 40])
def test_truncated_header(tmp_path, cut):
  folder = _write_dir(tmp_path / "m", _tensors())
  path = folder / "model.safetensors"
  path.write_bytes(path.read_bytes()[:cut])
  with pytest.raises(CheckpointError, match=r"model\.safetensors: truncated"):
    loaders.read_hf_dir(folder)


def test_corrupt_header(tmp_path):
  folder = _write_dir(tmp_path / "m", _tensors())
  path = folder / "model.safetensors"
  data = bytearray(path.read_bytes())
  data[8:12] = b"\xff\xfe{{"
  path.write_bytes(bytes(data))
  with pytest.raises(CheckpointError, match=r"model\.safetensors: corrupt safetensors header"):
    loaders.read_hf_dir(folder)


def test_index_lists_missing_shard(tmp_path):
  folder = _write_dir(tmp_path / "m", _tensors())
  (folder / "model.safetensors.index.json").write_text(json.dumps(
      {"weight_map": {"model.norm.weight": "gone.safetensors"}}))
  with pytest.raises(CheckpointError, match=r"gone\.safetensors: listed in"):
    loaders.read_hf_dir(folder)


def test_bad_tokenizer_json(tmp_path):
  folder = _write_dir(tmp_path / "m", _tensors())
  (folder / "tokenizer.json").write_text("{not json")
  with pytest.raises(CheckpointError, match=r"tokenizer\.json"):
    loaders.read_hf_dir(folder)


def test_load_dispatches_on_path(tmp_path):
  folder = _write_dir(tmp_path / "m", _tensors())
  lm = loaders.load(str(folder), dtype=jnp.float32)
  assert lm.tokenizer is None and lm.source == str(folder)
  assert jax.tree.leaves(lm.model)[0].dtype == jnp.float32
  with pytest.raises(CheckpointError, match="no such file"):
    loaders.load(str(tmp_path / "nope"))
