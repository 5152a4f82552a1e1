"""GGUF checkpoints (llama.cpp): dequantized weights, config and tokenizer."""

from __future__ import annotations

import os
import re

import gguf
import numpy as np

from sharq_jax.loaders.checkpoint import Checkpoint
from sharq_jax.loaders.tokenizer import Tokenizer, byte_level_bpe
from sharq_jax.models.config import ModelConfig
from sharq_jax.models.weights import CheckpointError

_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_BLOCK_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_BLOCK_RE = re.compile(r"blk\.(\d+)\.(\w+)\.(weight|bias)")
# Architectures whose converter permuted Q/K rows for llama.cpp's RoPE layout.
_PERMUTED_ARCHS = ("llama",)


def hf_tensor_name(gguf_name: str) -> str | None:
  """Hugging Face name of a GGUF tensor, or None for tensors the model ignores."""
  if gguf_name in _GLOBAL_NAMES:
    return _GLOBAL_NAMES[gguf_name]
  m = _BLOCK_RE.fullmatch(gguf_name)
  if m is None or m.group(2) not in _BLOCK_NAMES:
    return None
  return f"model.layers.{m.group(1)}.{_BLOCK_NAMES[m.group(2)]}.{m.group(3)}"


def unpermute_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
  """Inverts llama.cpp's Q/K row permutation (interleaved → rotate-half RoPE)."""
  rows = w.shape[0]
  return (w.reshape(n_heads, rows // n_heads // 2, 2, *w.shape[1:])
          .swapaxes(1, 2).reshape(w.shape))


def _field(reader: gguf.GGUFReader, key: str, default=None):
  f = reader.fields.get(key)
  return default if f is None else f.contents()


def _config(reader: gguf.GGUFReader, names: set[str], path: str) -> ModelConfig:
  arch = _field(reader, "general.architecture")
  key = lambda k, d=None: _field(reader, f"{arch}.{k}", d)
  if key("block_count") is None:
    raise CheckpointError(f"{path}: no '{arch}.block_count' metadata")
  if "rope_freqs.weight" in names:
    raise CheckpointError(f"{path}: GGUF rope_freqs (Llama-3 RoPE scaling) is "
                          "not supported; load the Hugging Face checkpoint")
  heads = int(key("attention.head_count"))
  hidden = int(key("embedding_length"))
  vocab = key("vocab_size") or len(_field(reader, "tokenizer.ggml.tokens"))
  return ModelConfig(
      vocab_size=int(vocab), hidden_size=hidden,
      intermediate_size=int(key("feed_forward_length")),
      num_layers=int(key("block_count")), num_heads=heads,
      num_kv_heads=int(key("attention.head_count_kv", heads)),
      head_dim=int(key("attention.key_length") or hidden // heads),
      rope_theta=float(key("rope.freq_base", 10000.0)),
      rms_norm_eps=float(key("attention.layer_norm_rms_epsilon", 1e-5)),
      tie_word_embeddings="output.weight" not in names,
      qkv_bias="blk.0.attn_q.bias" in names,
      o_bias="blk.0.attn_output.bias" in names,
      qk_norm="blk.0.attn_q_norm.weight" in names,
      max_position_embeddings=int(key("context_length", 8192)),
      bos_token_id=_field(reader, "tokenizer.ggml.bos_token_id"),
      eos_token_id=_field(reader, "tokenizer.ggml.eos_token_id"))


def _tokenizer(reader: gguf.GGUFReader, path: str) -> Tokenizer:
  model = _field(reader, "tokenizer.ggml.model")
  if model != "gpt2":
    raise CheckpointError(f"{path}: tokenizer model {model!r} is not supported "
                          "(only byte-level BPE, 'gpt2')")
  try:
    return byte_level_bpe(
        _field(reader, "tokenizer.ggml.tokens"),
        _field(reader, "tokenizer.ggml.merges", []),
        pre=_field(reader, "tokenizer.ggml.pre", "default"),
        token_types=_field(reader, "tokenizer.ggml.token_type", []),
        bos_id=_field(reader, "tokenizer.ggml.bos_token_id"),
        eos_id=_field(reader, "tokenizer.ggml.eos_token_id"))
  except ValueError as e:
    raise CheckpointError(f"{path}: {e}") from e


def _dequantize(t, path: str) -> np.ndarray:
  shape = tuple(int(d) for d in reversed(t.shape))
  try:
    out = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type)
  except NotImplementedError as e:
    raise CheckpointError(f"{path}: tensor {t.name!r}: {e}") from e
  return np.asarray(out, np.float32).reshape(shape)


class _Truncated(ValueError):
  pass


class _CheckedReader(gguf.GGUFReader):
  """``GGUFReader`` that names the first tensor whose bytes pass the file end.

  (The stock reader fails on such files with a bare numpy reshape error.)
  """

  def _build_tensors(self, start_offs, fields):
    size = len(self.data)
    for field in fields:
      _, name, _, dims, raw_dtype, offset = field.parts
      qtype = gguf.GGMLQuantizationType(int(raw_dtype[0]))
      block, type_size = gguf.GGML_QUANT_SIZES[qtype]
      end = int(start_offs + offset[0]) + int(np.prod(dims)) * type_size // block
      if end > size:
        raise _Truncated(f"tensor {bytes(name).decode()!r} is truncated (needs "
                         f"bytes up to {end}, file has {size})")
    super()._build_tensors(start_offs, fields)


def _open(path: str) -> gguf.GGUFReader:
  if not os.path.isfile(path):
    raise CheckpointError(f"{path}: GGUF file not found")
  try:
    return _CheckedReader(path)
  except _Truncated as e:
    raise CheckpointError(f"{path}: {e}") from e
  except Exception as e:  # the reader raises ValueError/IndexError/... on junk
    raise CheckpointError(f"{path}: not a readable GGUF file ({e})") from e


def read_gguf(path: str | os.PathLike) -> Checkpoint:
  """Reads a llama.cpp GGUF file: config, dequantized weights, tokenizer.

  Tensors are dequantized to float32 (any type ``gguf.quants`` knows: Q4_1,
  Q8_0, F16, F32, ...); Q/K rows of Llama-architecture files are un-permuted back
  to the Hugging Face layout.
  """
  path = os.fspath(path)
  reader = _open(path)
  names = {t.name for t in reader.tensors}
  cfg = _config(reader, names, path)
  permuted = _field(reader, "general.architecture") in _PERMUTED_ARCHS
  heads = {"attn_q": cfg.num_heads, "attn_k": cfg.num_kv_heads}
  tensors = {}
  for t in reader.tensors:
    name = hf_tensor_name(t.name)
    if name is None:
      continue
    w = _dequantize(t, path)
    kind = t.name.split(".")[-2]
    if permuted and t.name.startswith("blk.") and kind in heads:
      w = unpermute_rows(w, heads[kind])
    tensors[name] = w
  return Checkpoint(config=cfg, tensors=tensors,
                    tokenizer=_tokenizer(reader, path), source=path)
