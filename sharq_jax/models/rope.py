"""Rotary position embeddings (rotate-half layout, as in Hugging Face Llama)."""

from __future__ import annotations

import numpy as np
import jax
import jax.numpy as jnp

from sharq_jax.models.config import Llama3RopeScaling


def inv_frequencies(head_dim: int, theta: float,
                    scaling: Llama3RopeScaling | None = None) -> np.ndarray:
  """float32 inverse frequencies ``theta^(-2i/d)``, with Llama-3 scaling if set."""
  exps = np.arange(0, head_dim, 2, dtype=np.float32) / np.float32(head_dim)
  inv = (np.float32(1.0) / (np.float32(theta) ** exps)).astype(np.float32)
  if scaling is None:
    return inv
  old = scaling.original_max_position_embeddings
  low_wavelen = old / scaling.low_freq_factor
  high_wavelen = old / scaling.high_freq_factor
  wavelen = 2 * np.pi / inv
  scaled = np.where(wavelen > low_wavelen, inv / scaling.factor, inv)
  smooth = ((old / wavelen - scaling.low_freq_factor)
            / (scaling.high_freq_factor - scaling.low_freq_factor))
  smoothed = (1 - smooth) * scaled / scaling.factor + smooth * scaled
  medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
  return np.where(medium, smoothed, scaled).astype(np.float32)


def cos_sin(positions: jax.Array, inv_freq: np.ndarray):
  """cos and sin tables of shape ``positions.shape + (head_dim,)``, float32."""
  freqs = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)
  emb = jnp.concatenate([freqs, freqs], axis=-1)
  return jnp.cos(emb), jnp.sin(emb)


def apply(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
  """Rotates ``x`` (batch, seq, heads, head_dim) in float32; keeps its dtype."""
  xf = x.astype(jnp.float32)
  half = x.shape[-1] // 2
  rotated = jnp.concatenate([-xf[..., half:], xf[..., :half]], axis=-1)
  out = xf * cos[:, :, None, :] + rotated * sin[:, :, None, :]
  return out.astype(x.dtype)
