"""Perplexity: windowing, bookkeeping, and SmolLM2 against transformers' loss."""

import math
import os

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sharq_jax import models
from sharq_jax.eval import perplexity as ppl

REF = os.path.join(os.path.dirname(__file__), "..", "models", "data",
                   "smollm2_hf_reference.npz")


def _tiny(seed=0, vocab=40):
  cfg = models.ModelConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64,
                           num_layers=2, num_heads=4, num_kv_heads=2, head_dim=8,
                           dtype=jnp.float32)
  return models.CausalLM(cfg, rngs=nnx.Rngs(seed))


def _log_softmax(z):
  z = z.astype(np.float64)
  m = z.max(-1, keepdims=True)
  return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


def test_windows():
  w = ppl.windows(np.arange(10), 3)
  np.testing.assert_array_equal(w, [[0, 1, 2], [3, 4, 5], [6, 7, 8]])
  assert ppl.windows(np.arange(10), 3, max_windows=2).shape == (2, 3)
  with pytest.raises(ValueError, match="no window"):
    ppl.windows(np.arange(5), 8)


def test_uniform_model_has_vocab_size_perplexity():
  model = _tiny(vocab=40)
  model.embed_tokens.weight[...] = jnp.zeros_like(model.embed_tokens.weight[...])
  model.lm_head.weight[...] = jnp.zeros_like(model.lm_head.weight[...])
  r = ppl.perplexity(model, np.arange(100) % 40, seq_len=16, progress=False)
  assert r["windows"] == 6 and r["tokens"] == 6 * 15
  assert r["ppl"] == pytest.approx(40.0, rel=1e-6)


def test_matches_direct_nll_and_batching():
  model = _tiny()
  tokens = np.random.default_rng(0).integers(0, 40, 5 * 12 + 7)
  wins = tokens[:60].reshape(5, 12)
  lp = _log_softmax(np.asarray(model(jnp.asarray(wins))))
  nll = -np.mean(np.take_along_axis(lp[:, :-1], wins[:, 1:, None], -1))
  for batch in (1, 2, 5):
    r = ppl.perplexity(model, tokens, seq_len=12, batch_size=batch, progress=False)
    assert r["nll"] == pytest.approx(nll, rel=1e-5)
    assert r["ppl"] == pytest.approx(math.exp(nll), rel=1e-5)
    assert r["tokens"] == 5 * 11


def test_smollm2_matches_transformers_loss(smollm2):
  """Two 128-token windows of the pydoc text: NLL as transformers computes it."""
  ref = np.load(REF)
  r = ppl.perplexity(smollm2.to_model(jnp.float32), ref["ppl_tokens"], seq_len=128,
                     progress=False)
  assert r["windows"] == 2 and r["tokens"] == 254
  assert r["nll"] == pytest.approx(float(ref["ppl_nll"]), rel=2e-5)
  bf16 = ppl.perplexity(smollm2.to_model(jnp.bfloat16), ref["ppl_tokens"],
                        seq_len=128, progress=False)
  assert bf16["ppl"] == pytest.approx(r["ppl"], rel=0.05)
