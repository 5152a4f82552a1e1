"""Seeded random weights for tiny Llama / Qwen2 / Qwen3 checkpoints.

Shared by ``make_hf_reference.py`` (transformers side) and the tests (sharq_jax
side): each tensor is drawn from a generator seeded by its Hugging Face name, so
both sides rebuild identical weights from their own list of names and shapes.
Only numpy is needed.
"""

import zlib

import numpy as np

# name → (transformers config class, config kwargs). Small but covering: GQA,
# Llama-3 RoPE scaling with high/medium/low frequencies, untied and tied heads,
# Qwen2 q/k/v biases, Qwen3 q/k norms with head_dim != hidden / heads.
TINY_CONFIGS = {
    "llama3": ("LlamaConfig", dict(
        vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        max_position_embeddings=256, rms_norm_eps=1e-5, tie_word_embeddings=False,
        rope_theta=10000.0,
        rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                          high_freq_factor=4.0,
                          original_max_position_embeddings=64))),
    "qwen2": ("Qwen2Config", dict(
        vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=1,
        max_position_embeddings=256, rms_norm_eps=1e-6, tie_word_embeddings=True,
        rope_theta=1000000.0)),
    "qwen3": ("Qwen3Config", dict(
        vocab_size=96, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        max_position_embeddings=256, rms_norm_eps=1e-6, tie_word_embeddings=False,
        rope_theta=1000000.0)),
}
SEQ_LEN = 24


def tensor(name: str, shape, seed: int = 0) -> np.ndarray:
  """The float32 tensor called ``name`` (Hugging Face naming)."""
  rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
  x = rng.standard_normal(tuple(shape))
  if name.endswith("norm.weight"):
    x = 1.0 + 0.2 * x
  elif name.endswith(".bias"):
    x = 0.2 * x
  elif len(shape) == 2 and "embed_tokens" not in name:
    x = x / np.sqrt(shape[1])
  return x.astype(np.float32)


def tokens(name: str, vocab: int, seed: int = 0) -> np.ndarray:
  """The prompt ids used for model ``name``."""
  rng = np.random.default_rng([seed, zlib.crc32(("tokens/" + name).encode())])
  return rng.integers(0, vocab, SEQ_LEN).astype(np.int32)
