"""Configuration of the Llama-family decoder (Llama 3.x, Qwen2/2.5, Qwen3, SmolLM2)."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Llama3RopeScaling:
  """Llama 3.1 RoPE frequency scaling (HF ``rope_type == "llama3"``)."""

  factor: float = 8.0
  low_freq_factor: float = 1.0
  high_freq_factor: float = 4.0
  original_max_position_embeddings: int = 8192


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Shape and numerics of one decoder-only transformer of the Llama family.

  The variants differ only in flags: Qwen2/2.5 set ``qkv_bias``, Qwen3 sets
  ``qk_norm``, SmolLM2 and small Qwen models set ``tie_word_embeddings``.
  ``dtype`` is the parameter and activation dtype (bfloat16 by default); norms,
  softmax and logits are always computed in float32.
  """

  vocab_size: int
  hidden_size: int
  intermediate_size: int
  num_layers: int
  num_heads: int
  num_kv_heads: int
  head_dim: int
  rope_theta: float = 10000.0
  rope_scaling: Llama3RopeScaling | None = None
  rms_norm_eps: float = 1e-5
  tie_word_embeddings: bool = False
  qkv_bias: bool = False
  o_bias: bool = False
  mlp_bias: bool = False
  qk_norm: bool = False
  max_position_embeddings: int = 8192
  bos_token_id: int | None = None
  eos_token_id: int | None = None
  dtype: Any = jnp.bfloat16

  def __post_init__(self):
    if self.num_heads % self.num_kv_heads:
      raise ValueError(
          f"num_heads={self.num_heads} is not a multiple of "
          f"num_kv_heads={self.num_kv_heads}")
    if self.head_dim % 2:
      raise ValueError(f"head_dim={self.head_dim} must be even for RoPE")

  def replace(self, **changes) -> ModelConfig:
    """Returns a copy with ``changes`` applied (e.g. ``dtype=jnp.float32``)."""
    return dataclasses.replace(self, **changes)


def smollm2_135m(dtype=jnp.bfloat16) -> ModelConfig:
  """SmolLM2-135M(-Instruct): Llama arch, 30 layers, hidden 576, GQA 9/3."""
  return ModelConfig(
      vocab_size=49152, hidden_size=576, intermediate_size=1536, num_layers=30,
      num_heads=9, num_kv_heads=3, head_dim=64, rope_theta=100000.0,
      rms_norm_eps=1e-5, tie_word_embeddings=True, max_position_embeddings=8192,
      bos_token_id=1, eos_token_id=2, dtype=dtype)


def _rope_scaling_from_hf(rs: dict | None) -> Llama3RopeScaling | None:
  if not rs:
    return None
  kind = rs.get("rope_type", rs.get("type"))
  if kind in (None, "default"):
    return None
  if kind != "llama3":
    raise ValueError(f"unsupported rope_scaling type {kind!r} in config.json")
  return Llama3RopeScaling(
      factor=float(rs["factor"]),
      low_freq_factor=float(rs["low_freq_factor"]),
      high_freq_factor=float(rs["high_freq_factor"]),
      original_max_position_embeddings=int(
          rs["original_max_position_embeddings"]))


# model_type -> flags fixed by the architecture (over the config's own flags).
_ARCHS = {
    "llama": {},
    "mistral": {},
    "qwen2": {"qkv_bias": True, "o_bias": False},
    "qwen3": {"qk_norm": True},
}


def from_hf_config(cfg: dict, dtype=jnp.bfloat16) -> ModelConfig:
  """Builds a ``ModelConfig`` from a Hugging Face ``config.json`` dict.

  Reads both the transformers 4 layout (``rope_theta``, ``rope_scaling``) and
  the transformers 5 one (``rope_parameters``).
  """
  model_type = cfg.get("model_type", "llama")
  if model_type not in _ARCHS:
    raise ValueError(
        f"unsupported model_type {model_type!r} in config.json "
        f"(supported: {sorted(_ARCHS)})")
  if cfg.get("use_sliding_window"):
    raise ValueError("sliding-window attention is not supported")
  rope_params = cfg.get("rope_parameters") or {}
  rope_theta = cfg.get("rope_theta", rope_params.get("rope_theta", 10000.0))
  n_heads = int(cfg["num_attention_heads"])
  head_dim = cfg.get("head_dim") or int(cfg["hidden_size"]) // n_heads
  attn_bias = bool(cfg.get("attention_bias", False))
  flags = dict(qkv_bias=attn_bias, o_bias=attn_bias,
               mlp_bias=bool(cfg.get("mlp_bias", False)), qk_norm=False)
  flags.update(_ARCHS[model_type])
  eos = cfg.get("eos_token_id")
  if isinstance(eos, list):
    eos = eos[0] if eos else None
  return ModelConfig(
      vocab_size=int(cfg["vocab_size"]),
      hidden_size=int(cfg["hidden_size"]),
      intermediate_size=int(cfg["intermediate_size"]),
      num_layers=int(cfg["num_hidden_layers"]),
      num_heads=n_heads,
      num_kv_heads=int(cfg.get("num_key_value_heads") or n_heads),
      head_dim=int(head_dim),
      rope_theta=float(rope_theta),
      rope_scaling=_rope_scaling_from_hf(cfg.get("rope_scaling") or rope_params),
      rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
      tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
      max_position_embeddings=int(cfg.get("max_position_embeddings", 8192)),
      bos_token_id=cfg.get("bos_token_id"),
      eos_token_id=eos,
      dtype=dtype,
      **flags)
