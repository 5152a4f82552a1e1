"""Tensor-level error of every registry method on synthetic heavy-tailed activations."""

from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from experiments import results
from sharq_jax import methods as sq_methods
from sharq_jax.linear import sharq_dot


def heavy_tailed_activations(rng: np.random.Generator, tokens: int, k: int, *,
                             outlier_channels: int, outlier_scale: float,
                             spike_prob: float) -> np.ndarray:
  """LLM-like activations: Gaussian rows, a few large outlier channels, rare spikes."""
  x = rng.standard_normal((tokens, k)).astype(np.float32)
  x *= np.exp(rng.normal(0.0, 0.5, size=(tokens, 1))).astype(np.float32)  # token norms
  channels = rng.choice(k, size=outlier_channels, replace=False)
  x[:, channels] *= outlier_scale * rng.uniform(0.5, 1.5, size=outlier_channels)
  spikes = rng.random((tokens, k)) < spike_prob
  x[spikes] *= rng.uniform(10.0, 100.0, size=int(spikes.sum()))
  return x


def sqnr_db(reference: np.ndarray, approx: np.ndarray) -> float:
  """10·log10(‖ref‖² / ‖ref − approx‖²); inf when exact."""
  noise = float(np.sum((reference.astype(np.float64) - approx) ** 2))
  signal = float(np.sum(reference.astype(np.float64) ** 2))
  return math.inf if noise == 0 else 10.0 * math.log10(signal / noise)


def run(config, out_dir: str) -> list[dict]:
  """Measures activation and linear-output SQNR of each method; writes JSON/CSV/PNG."""
  rng = np.random.default_rng(config.seed)
  x = heavy_tailed_activations(rng, config.tokens, config.k,
                               outlier_channels=config.outlier_channels,
                               outlier_scale=config.outlier_scale,
                               spike_prob=config.spike_prob)
  w = (rng.standard_normal((config.n, config.k)) / math.sqrt(config.k)).astype(np.float32)
  y_ref = x.astype(np.float64) @ w.astype(np.float64).T
  rows = []
  for name in config.methods:
    method = sq_methods.get_method(name)
    x_hat = np.asarray(jax.jit(method.activation.fake_quant)(x))
    qw = sq_methods.quantize_weight(w, method)
    y = np.asarray(jax.jit(sharq_dot)(jnp.asarray(x), qw))
    # Output error from the activation side alone (weights kept exact).
    y_act = x_hat.astype(np.float64) @ w.astype(np.float64).T
    rows.append(dict(method=name,
                     act_sqnr_db=sqnr_db(x, x_hat),
                     act_rel_err=float(np.linalg.norm(x - x_hat) / np.linalg.norm(x)),
                     act_only_out_sqnr_db=sqnr_db(y_ref, y_act),
                     out_sqnr_db=sqnr_db(y_ref, y),
                     out_rel_err=float(np.linalg.norm(y_ref - y) / np.linalg.norm(y_ref)),
                     baseline=method.baseline))
  columns = ["method", "act_sqnr_db", "act_rel_err", "act_only_out_sqnr_db", "out_sqnr_db",
             "out_rel_err", "baseline"]
  print(results.format_table(rows, columns))
  paths = results.save(out_dir, "tensor_error", rows, columns, config.to_dict())
  finite = [r for r in rows if math.isfinite(r["out_sqnr_db"])]
  png = results.bar_plot(os.path.join(out_dir, "tensor_error.png"),
                         [r["method"] for r in finite], [r["out_sqnr_db"] for r in finite],
                         ylabel="linear output SQNR (dB, higher is better)",
                         title=f"{config.tokens}x{config.k} heavy-tailed activations")
  print("wrote", paths["json"], paths["csv"], png or "(no plot: matplotlib missing)")
  return rows
