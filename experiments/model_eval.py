"""Perplexity and zero-shot accuracy of a model under every requested method.

The paper's comparison: for each method the perplexity (DESIGN.md §5 protocol), its
change against bf16, and the share of the single-path FP4 gap it recovers; optionally
zero-shot multiple-choice accuracy on local task files, and sharded evaluation on a
device mesh.
"""

from __future__ import annotations

import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import ml_collections
from flax import nnx
from jax.sharding import Mesh

from experiments import results
from sharq_jax import loaders, methods as sq_methods, parallel
from sharq_jax.eval import perplexity as ppl_eval
from sharq_jax.eval import text as text_sources
from sharq_jax.eval import zeroshot
from sharq_jax.nn import convert

TEXT_SOURCES = {
    "python-docs": lambda path: text_sources.PythonDocs(),
    "wikitext2": text_sources.WikiText2Raw,
    "file": text_sources.TextFile,
}
DTYPES = {"bfloat16": jnp.bfloat16, "float32": jnp.float32}


def gap_recovery(metric_m: float, metric_b: float, metric_bf16: float, *,
                 higher_is_better: bool = False) -> float:
  """(b − m) / (b − bf16) for perplexity; sign flipped for accuracy (DESIGN §2.6)."""
  sign = -1.0 if higher_is_better else 1.0
  gap = sign * (metric_b - metric_bf16)
  return float("nan") if gap == 0 else sign * (metric_b - metric_m) / gap


def _mesh(config) -> Mesh | None:
  dp, tp = config.mesh.dp, config.mesh.tp
  if dp * tp <= 1:
    return None
  if dp * tp > jax.device_count():
    raise ValueError(f"mesh dp={dp} x tp={tp} needs {dp * tp} devices, have "
                     f"{jax.device_count()} (on CPU: XLA_FLAGS="
                     f"--xla_force_host_platform_device_count={dp * tp})")
  return Mesh(np.array(jax.devices()[:dp * tp]).reshape(dp, tp), ("data", "model"))


def _prepare(base: nnx.Module, method: str, mesh: Mesh | None):
  """The model under `method` (a converted clone; sharded when a mesh is given)."""
  if mesh is not None:
    model, report = parallel.quantize_sharded(nnx.clone(base), mesh, method=method)
    return model, report.linear_bytes_after
  model = nnx.clone(base)
  report = convert.quantize_model(model, method=method)
  return model, report.linear_bytes_after


def _add_gap_recovery(rows: list[dict], task_names: list[str]) -> None:
  by_name = {r["method"]: r for r in rows}
  ref = by_name.get("bf16")
  for r in rows:
    if ref is not None:
      r["delta_ppl"] = r["ppl"] - ref["ppl"]
    base = by_name.get(sq_methods.get_method(r["method"]).baseline or "")
    if ref is None or base is None:
      continue
    r["gap_recovery"] = gap_recovery(r["ppl"], base["ppl"], ref["ppl"])
    for t in task_names:
      key = f"{t}/acc"
      if key in r:
        r[f"{t}/gap_recovery"] = gap_recovery(r[key], base[key], ref[key],
                                              higher_is_better=True)


def run(config, out_dir: str) -> list[dict]:
  """Evaluates config.methods on config.model; writes JSON/CSV/MD and a PNG plot."""
  start = time.time()
  loaded = loaders.load(config.model, dtype=DTYPES[config.dtype])
  source = TEXT_SOURCES[config.text](config.text_path)
  tokens = loaded.tokenizer.encode(source.read())
  mesh = _mesh(config)
  sharding = None if mesh is None else parallel.data_sharding(mesh)
  print(f"{loaded.source}: {config.text} -> {len(tokens)} tokens; seq_len={config.seq_len}"
        f" max_windows={config.max_windows}; dtype={config.dtype}; mesh="
        f"{None if mesh is None else dict(mesh.shape)}; python {sys.version.split()[0]}")
  rows = []
  tasks = [ml_collections.ConfigDict(dict(t)) for t in config.tasks]
  task_names = [t.name for t in tasks]
  for method in config.methods:
    t0 = time.time()
    model, weight_bytes = _prepare(loaded.model, method, mesh)
    res = ppl_eval.perplexity(model, tokens, seq_len=config.seq_len,
                              batch_size=config.batch_size, max_windows=config.max_windows,
                              input_sharding=sharding)
    row = dict(method=method, ppl=res["ppl"], nll=res["nll"], tokens=res["tokens"],
               windows=res["windows"], linear_weight_mib=weight_bytes / 2**20)
    for task in tasks:
      metrics = zeroshot.evaluate(task.name, model, loaded.tokenizer, task.path,
                                  labels_path=task.get("labels_path") or None,
                                  limit=task.get("limit") or None)
      row.update({f"{task.name}/{k}": v for k, v in metrics.items()})
    row["seconds"] = time.time() - t0
    rows.append(row)
    print(f"  {method}: ppl {row['ppl']:.4f} over {row['tokens']} tokens "
          f"({row['seconds']:.0f} s)", flush=True)
  _add_gap_recovery(rows, task_names)
  columns = ["method", "ppl", "delta_ppl", "gap_recovery", "tokens", "windows",
             "linear_weight_mib"]
  columns += [k for k in rows[0] if "/" in k] + ["seconds"]
  print(results.format_table(rows, columns))
  cfg = config.to_dict()
  cfg.update(source=loaded.source, python=sys.version.split()[0], n_tokens=len(tokens))
  paths = results.save(out_dir, "model_eval", rows, columns, cfg)
  png = results.bar_plot(os.path.join(out_dir, "model_eval.png"),
                         [r["method"] for r in rows], [r["ppl"] for r in rows],
                         ylabel=f"perplexity ({config.text}, {config.seq_len} ctx)",
                         title=f"{config.model}, {rows[0]['tokens']} predicted tokens",
                         reference=rows[0]["ppl"] if rows[0]["method"] == "bf16" else None)
  print("wrote", paths["json"], paths["csv"], paths["md"], png or "",
        f"in {time.time() - start:.0f} s")
  return rows
