"""Jitted per-token log-probabilities of a causal LM (shared by all evaluations)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


@functools.partial(jax.jit, static_argnums=0)
def _score(graphdef, state, tokens, targets):
  logits = nnx.merge(graphdef, state)(tokens)
  picked = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
  logprob = picked - jax.nn.logsumexp(logits, axis=-1)
  return logprob, jnp.argmax(logits, axis=-1) == targets


def make_scorer(model: nnx.Module, *, input_sharding=None
                ) -> Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
  """Returns ``score(tokens, targets) -> (logprob, is_greedy)``, both (B, T).

  ``logprob[b, t] = log p(targets[b, t] | tokens[b, :t+1])`` in float32 and
  ``is_greedy`` says whether the target is the argmax. Compilations are cached
  per model structure and input shape, so scorers of the same model share them;
  the model is split once, so later edits to it are not seen. ``input_sharding``
  (e.g. ``parallel.data_sharding(mesh)``) places each batch for data parallelism.
  """
  graphdef, state = nnx.split(model)

  def run(tokens, targets):
    tokens, targets = jnp.asarray(tokens, jnp.int32), jnp.asarray(targets, jnp.int32)
    if input_sharding is not None:
      tokens, targets = jax.device_put((tokens, targets), input_sharding)
    lp, greedy = _score(graphdef, state, tokens, targets)
    return np.asarray(lp), np.asarray(greedy)

  return run
