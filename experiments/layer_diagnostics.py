"""Per-layer diagnostics: where does each method's error come from?

For one window of text, every quantized linear's real input is captured from the
unquantized model; then, per layer and method, the SQNR of the quantized input
(activation side alone) and of the layer output (activation and weight quantized)
against the exact float32 product.
"""

from __future__ import annotations

import collections
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from experiments import results
from experiments.model_eval import DTYPES, TEXT_SOURCES
from experiments.tensor_error import sqnr_db
from sharq_jax import loaders, methods as sq_methods
from sharq_jax.linear import sharq_dot
from sharq_jax.nn import convert


class _Recorder(nnx.Module):
  """Stands in for a linear during one eager forward and keeps its input."""

  def __init__(self, layer, store: list):
    self.layer = layer
    self.store = store

  def __call__(self, x):
    self.store.append(x)
    return self.layer(x)


FORWARD_ORDER = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _forward_position(path: str) -> tuple[int, int]:
  parts = path.split(".")
  kind = parts[-1]
  return int(parts[1]), FORWARD_ORDER.index(kind) if kind in FORWARD_ORDER else len(FORWARD_ORDER)


def capture_linear_inputs(model: nnx.Module, tokens: np.ndarray):
  """[(dotted path, input array, weight (N, K))] for every decoder linear, in the
  order the forward pass meets them."""
  captured = []
  swaps = []
  for path, layer in convert.decoder_linears(model):
    parent = model
    for p in path[:-1]:
      parent = parent[p] if isinstance(p, int) else getattr(parent, p)
    store: list = []
    setattr(parent, path[-1], _Recorder(layer, store))
    swaps.append((parent, path[-1], layer, store, ".".join(map(str, path))))
  try:
    model(jnp.asarray(tokens)[None])
  finally:
    for parent, name, layer, store, dotted in swaps:
      setattr(parent, name, layer)
      captured.append((dotted, store[0], layer.weight[...]))
  return sorted(captured, key=lambda c: _forward_position(c[0]))


@jax.jit
def _exact_product(x, w):
  return jnp.einsum("...k,nk->...n", x.astype(jnp.float32), w.astype(jnp.float32),
                    precision=jax.lax.Precision.HIGHEST)


def run(config, out_dir: str) -> list[dict]:
  """Writes per-layer rows (CSV/JSON), a per-layer-type summary and a PNG plot."""
  loaded = loaders.load(config.model, dtype=DTYPES[config.dtype])
  tokens = loaded.tokenizer.encode(TEXT_SOURCES[config.text](config.text_path).read())
  window = np.asarray(tokens[:config.seq_len], np.int32)
  captured = capture_linear_inputs(loaded.model, window)
  print(f"captured {len(captured)} linear inputs from {len(window)} tokens")
  rows = []
  for method_name in config.methods:
    method = sq_methods.get_method(method_name)
    for index, (path, x, w) in enumerate(captured):
      x32 = np.asarray(x, np.float32)
      y_ref = np.asarray(_exact_product(x, w))
      x_hat = np.asarray(sq_methods.fake_quant_activation(x, method))
      y = np.asarray(sharq_dot(x.astype(jnp.float32), sq_methods.quantize_weight(w, method)))
      rows.append(dict(method=method_name, index=index, layer=path,
                       kind=path.rsplit(".", 1)[-1], input_sqnr_db=sqnr_db(x32, x_hat),
                       output_sqnr_db=sqnr_db(y_ref, y)))
    print(f"  {method_name}: done", flush=True)
  columns = ["method", "index", "layer", "kind", "input_sqnr_db", "output_sqnr_db"]
  results.save(out_dir, "layer_diagnostics", rows, columns, config.to_dict())
  summary = _summary(rows, config.methods)
  summary_columns = ["kind"] + [f"{m} in/out" for m in config.methods]
  print(results.format_table(summary, summary_columns))
  results.save(out_dir, "layer_diagnostics_summary", summary, summary_columns)
  png = _plot(rows, config.methods, os.path.join(out_dir, "layer_diagnostics.png"))
  print("wrote", out_dir, png or "")
  return rows


def _summary(rows, method_names):
  """Mean input/output SQNR per layer type (q, k, v, o, gate, up, down) and method."""
  acc = collections.defaultdict(list)
  for r in rows:
    acc[(r["kind"], r["method"])].append((r["input_sqnr_db"], r["output_sqnr_db"]))
  kinds = list(dict.fromkeys(r["kind"] for r in rows))
  out = []
  for kind in kinds:
    row = dict(kind=kind)
    for m in method_names:
      vals = np.array(acc[(kind, m)], np.float64)
      vals = np.where(np.isfinite(vals), vals, np.nan)
      row[f"{m} in/out"] = f"{np.nanmean(vals[:, 0]):.1f}/{np.nanmean(vals[:, 1]):.1f}"
    out.append(row)
  return out


def _plot(rows, method_names, path):
  plt = results.pyplot()
  if plt is None:
    return None
  fig, axes = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
  for m in method_names:
    mine = [r for r in rows if r["method"] == m]
    idx = [r["index"] for r in mine]
    for ax, key in zip(axes, ("input_sqnr_db", "output_sqnr_db")):
      ax.plot(idx, [r[key] if np.isfinite(r[key]) else np.nan for r in mine], lw=1, label=m)
  axes[0].set_ylabel("input SQNR (dB)")
  axes[1].set_ylabel("output SQNR (dB)")
  axes[1].set_xlabel("linear layer (forward order: q k v o gate up down per block)")
  axes[0].legend(ncol=4, fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path
