"""Flax NNX decoder of the Llama family (Llama 3.x, Qwen2/2.5, Qwen3, SmolLM2).

Attribute names mirror Hugging Face checkpoints (``layers[i].self_attn.q_proj.weight``
is ``model.layers.i.self_attn.q_proj.weight``) so that loading is a rename.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from sharq_jax.models import rope
from sharq_jax.models.config import ModelConfig
from sharq_jax.nn.linear import HIGHEST, Linear


class RMSNorm(nnx.Module):
  """``w · x / sqrt(mean(x²) + eps)``; statistics in float32 (HF order of casts)."""

  def __init__(self, dim: int, *, eps: float, dtype):
    self.weight = nnx.Param(jnp.ones((dim,), dtype))
    self.eps = eps

  def __call__(self, x: jax.Array) -> jax.Array:
    xf = x.astype(jnp.float32)
    var = jnp.mean(xf * xf, axis=-1, keepdims=True)
    y = (xf * jax.lax.rsqrt(var + self.eps)).astype(x.dtype)
    return self.weight[...] * y


class Embed(nnx.Module):
  """Token embedding table (vocab, hidden); also the tied output projection."""

  def __init__(self, vocab: int, dim: int, *, dtype, rngs: nnx.Rngs):
    init = nnx.initializers.normal(0.02)
    self.weight = nnx.Param(init(rngs.params(), (vocab, dim), dtype))

  def __call__(self, tokens: jax.Array) -> jax.Array:
    return jnp.take(self.weight[...], tokens, axis=0)

  def attend(self, h: jax.Array) -> jax.Array:
    """float32 logits ``h Eᵀ``."""
    return jnp.einsum("...d,vd->...v", h, self.weight[...], precision=HIGHEST,
                      preferred_element_type=jnp.float32)


class Attention(nnx.Module):
  """Causal grouped-query attention with RoPE; softmax in float32."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    d, hd = cfg.hidden_size, cfg.head_dim
    lin = lambda i, o, b: Linear(i, o, use_bias=b, dtype=cfg.dtype, rngs=rngs)
    self.q_proj = lin(d, cfg.num_heads * hd, cfg.qkv_bias)
    self.k_proj = lin(d, cfg.num_kv_heads * hd, cfg.qkv_bias)
    self.v_proj = lin(d, cfg.num_kv_heads * hd, cfg.qkv_bias)
    self.o_proj = lin(cfg.num_heads * hd, d, cfg.o_bias)
    if cfg.qk_norm:
      self.q_norm = RMSNorm(hd, eps=cfg.rms_norm_eps, dtype=cfg.dtype)
      self.k_norm = RMSNorm(hd, eps=cfg.rms_norm_eps, dtype=cfg.dtype)
    else:
      self.q_norm = self.k_norm = None
    self.num_heads, self.num_kv_heads, self.head_dim = (
        cfg.num_heads, cfg.num_kv_heads, hd)

  def __call__(self, x: jax.Array, cos: jax.Array, sin: jax.Array):
    b, t, _ = x.shape
    q = self.q_proj(x).reshape(b, t, self.num_heads, self.head_dim)
    k = self.k_proj(x).reshape(b, t, self.num_kv_heads, self.head_dim)
    v = self.v_proj(x).reshape(b, t, self.num_kv_heads, self.head_dim)
    if self.q_norm is not None:
      q, k = self.q_norm(q), self.k_norm(k)
    q, k = rope.apply(q, cos, sin), rope.apply(k, cos, sin)
    group = self.num_heads // self.num_kv_heads
    # Head-major layouts make both products plain batched matmuls.
    q = q.reshape(b, t, self.num_kv_heads, group, self.head_dim)
    q = q.transpose(0, 2, 3, 1, 4)                     # (b, kv, g, t, d)
    k, v = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)  # (b, kv, t, d)
    scores = jnp.einsum("bkgqd,bksd->bkgqs", q, k, precision=HIGHEST,
                        preferred_element_type=jnp.float32)
    scores = scores * (self.head_dim ** -0.5)
    causal = jnp.tril(jnp.ones((t, t), dtype=bool))
    scores = jnp.where(causal, scores, -jnp.inf)
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    out = jnp.einsum("bkgqs,bksd->bkgqd", probs, v, precision=HIGHEST,
                     preferred_element_type=jnp.float32).astype(x.dtype)
    out = out.transpose(0, 3, 1, 2, 4)                 # (b, t, kv, g, d)
    return self.o_proj(out.reshape(b, t, self.num_heads * self.head_dim))


class MLP(nnx.Module):
  """SwiGLU feed-forward: ``down(silu(gate(x)) · up(x))``."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    d, f = cfg.hidden_size, cfg.intermediate_size
    lin = lambda i, o: Linear(i, o, use_bias=cfg.mlp_bias, dtype=cfg.dtype,
                              rngs=rngs)
    self.gate_proj, self.up_proj, self.down_proj = lin(d, f), lin(d, f), lin(f, d)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderBlock(nnx.Module):
  """Pre-norm residual block: attention then MLP."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    norm = lambda: RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps, dtype=cfg.dtype)
    self.input_layernorm = norm()
    self.self_attn = Attention(cfg, rngs=rngs)
    self.post_attention_layernorm = norm()
    self.mlp = MLP(cfg, rngs=rngs)

  def __call__(self, x, cos, sin):
    x = x + self.self_attn(self.input_layernorm(x), cos, sin)
    return x + self.mlp(self.post_attention_layernorm(x))


class CausalLM(nnx.Module):
  """Decoder-only language model; ``__call__`` maps tokens to float32 logits."""

  def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
    self.config = cfg
    self.embed_tokens = Embed(cfg.vocab_size, cfg.hidden_size, dtype=cfg.dtype,
                              rngs=rngs)
    self.layers = nnx.List(
        [DecoderBlock(cfg, rngs=rngs) for _ in range(cfg.num_layers)])
    self.norm = RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps, dtype=cfg.dtype)
    self.lm_head = (None if cfg.tie_word_embeddings else
                    Linear(cfg.hidden_size, cfg.vocab_size, use_bias=False,
                           dtype=cfg.dtype, rngs=rngs))

  def hidden_states(self, tokens: jax.Array) -> jax.Array:
    """Final normed hidden states (batch, seq, hidden) for int tokens (batch, seq)."""
    positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
    cfg = self.config
    inv_freq = rope.inv_frequencies(cfg.head_dim, cfg.rope_theta,
                                    cfg.rope_scaling)
    cos, sin = rope.cos_sin(positions, inv_freq)
    x = self.embed_tokens(tokens)
    for layer in self.layers:
      x = layer(x, cos, sin)
    return self.norm(x)

  def logits(self, h: jax.Array) -> jax.Array:
    """float32 logits from hidden states."""
    if self.lm_head is None:
      return self.embed_tokens.attend(h)
    w = self.lm_head.weight[...]
    return jnp.einsum("...d,vd->...v", h, w, precision=HIGHEST,
                      preferred_element_type=jnp.float32)

  def __call__(self, tokens: jax.Array) -> jax.Array:
    return self.logits(self.hidden_states(tokens))
