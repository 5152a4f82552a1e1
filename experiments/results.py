"""Writing experiment results: a terminal table, JSON, CSV and optional PNG plots."""

from __future__ import annotations

import csv
import datetime
import json
import os
from typing import Any, Sequence

import jax


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
  """Renders rows as an aligned plain-text table (floats with 4 significant digits)."""

  def cell(v):
    if isinstance(v, float):
      return f"{v:.4g}"
    return "" if v is None else str(v)

  body = [[cell(r.get(c)) for c in columns] for r in rows]
  widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c)
            for i, c in enumerate(columns)]
  lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)),
           "  ".join("-" * w for w in widths)]
  lines += ["  ".join(v.ljust(w) for v, w in zip(b, widths)) for b in body]
  return "\n".join(lines)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
  """Renders rows as a GitHub-flavoured markdown table (floats to 4 significant digits)."""

  def cell(v):
    return f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))

  lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
  return "\n".join(lines)


def run_metadata() -> dict[str, Any]:
  """Date, jax version and backend, recorded with every result file."""
  return dict(date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              jax_version=jax.__version__, backend=jax.default_backend(),
              devices=[str(d) for d in jax.devices()])


def save(out_dir: str, stem: str, rows: Sequence[dict[str, Any]], columns: Sequence[str],
         config: dict[str, Any] | None = None) -> dict[str, str]:
  """Writes `<stem>.json` (rows + config + metadata), `<stem>.csv` and `<stem>.md`."""
  os.makedirs(out_dir, exist_ok=True)
  json_path = os.path.join(out_dir, f"{stem}.json")
  csv_path = os.path.join(out_dir, f"{stem}.csv")
  with open(json_path, "w") as f:
    json.dump(dict(metadata=run_metadata(), config=config or {}, rows=list(rows)), f,
              indent=2, default=str)
  with open(csv_path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
  md_path = os.path.join(out_dir, f"{stem}.md")
  with open(md_path, "w") as f:
    f.write(markdown_table(rows, columns) + "\n")
  return dict(json=json_path, csv=csv_path, md=md_path)


def pyplot():
  """matplotlib.pyplot on the headless Agg backend, or None when matplotlib is missing."""
  try:
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  return plt


def bar_plot(path: str, labels: Sequence[str], values: Sequence[float], *, ylabel: str,
             title: str, reference: float | None = None) -> str | None:
  """Saves a horizontal bar chart as PNG (skipped, returning None, without matplotlib)."""
  plt = pyplot()
  if plt is None:
    return None
  fig, ax = plt.subplots(figsize=(7, 0.35 * len(labels) + 1.2))
  ax.barh(list(labels)[::-1], list(values)[::-1], color="#4C72B0")
  if reference is not None:
    ax.axvline(reference, color="gray", linestyle="--", linewidth=1)
  ax.set_xlabel(ylabel)
  ax.set_title(title)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def line_plot(path: str, series: dict[str, tuple[Sequence[float], Sequence[float]]], *,
              xlabel: str, ylabel: str, title: str, logx: bool = False,
              references: Sequence[tuple[float, str]] = ()) -> str | None:
  """Saves one line per `label -> (xs, ys)` as PNG, with dashed horizontal reference
  lines `(y, label)`; skipped, returning None, without matplotlib or data."""
  if not any(len(xs) for xs, _ in series.values()):
    return None
  plt = pyplot()
  if plt is None:
    return None
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for label, (xs, ys) in series.items():
    ax.plot(list(xs), list(ys), marker="o", label=label)
  for y, label in references:
    ax.axhline(y, color="gray", linestyle="--", linewidth=1)
    ax.annotate(label, (0.01, y), xycoords=("axes fraction", "data"), fontsize=8,
                color="gray", va="bottom")
  if logx:
    ax.set_xscale("log", base=2)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path
