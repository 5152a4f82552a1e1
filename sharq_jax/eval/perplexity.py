"""Perplexity over non-overlapping windows (DESIGN §5)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from sharq_jax.eval.scoring import make_scorer


def windows(tokens: Sequence[int] | np.ndarray, seq_len: int,
            max_windows: int | None = None) -> np.ndarray:
  """Splits ``tokens`` into non-overlapping windows (n, seq_len); drops the tail."""
  tokens = np.asarray(tokens, np.int32)
  n = len(tokens) // seq_len
  if max_windows is not None:
    n = min(n, max_windows)
  if n == 0:
    raise ValueError(f"{len(tokens)} tokens make no window of {seq_len}")
  return tokens[:n * seq_len].reshape(n, seq_len)


def perplexity(model: nnx.Module, tokens: Sequence[int] | np.ndarray, *,
               seq_len: int = 2048, batch_size: int = 1,
               max_windows: int | None = None, progress: bool = True,
               input_sharding=None) -> dict:
  """Mean next-token NLL over non-overlapping windows and its exponential.

  Every window predicts its ``seq_len - 1`` later tokens from the ones before
  (no BOS is added; the caller's tokens are used as they are). Returns
  ``ppl``, ``nll`` (mean, nats), ``tokens`` (predicted tokens), ``windows``,
  ``seq_len``, ``seconds`` and ``seconds_per_window`` (compilation included).
  ``input_sharding`` places each batch (data parallelism; batch_size must then be a
  multiple of the data-axis size).
  """
  wins = windows(tokens, seq_len, max_windows)
  score = make_scorer(model, input_sharding=input_sharding)
  total, count = 0.0, 0
  start = time.perf_counter()
  bar = tqdm(total=len(wins), unit="window", disable=not progress,
             desc=f"ppl@{seq_len}")
  for i in range(0, len(wins), batch_size):
    batch = wins[i:i + batch_size]
    real = len(batch)
    if real < batch_size:  # pad to one shape: no second compilation
      batch = np.concatenate([batch, np.repeat(batch[-1:], batch_size - real, 0)])
    # Feed whole windows (a friendly length); the last position predicts nothing.
    targets = np.concatenate([batch[:, 1:], batch[:, :1]], axis=1)
    logprob, _ = score(batch, targets)
    total -= float(np.sum(logprob[:real, :-1], dtype=np.float64))
    count += real * (seq_len - 1)
    bar.update(real)
    bar.set_postfix(ppl=f"{math.exp(total / count):.3f}")
  bar.close()
  seconds = time.perf_counter() - start
  nll = total / count
  return dict(ppl=math.exp(nll), nll=nll, tokens=count, windows=len(wins),
              seq_len=seq_len, seconds=seconds,
              seconds_per_window=seconds / len(wins))
