"""Zero-shot evaluation with lm-eval-harness semantics (log-likelihood scoring)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from sharq_jax.eval import tasks
from sharq_jax.eval.scoring import make_scorer
from sharq_jax.loaders.tokenizer import Tokenizer


def encode_pair(tokenizer: Tokenizer, context: str,
                continuation: str) -> tuple[list[int], list[int]]:
  """lm-eval's split: trailing spaces move to the continuation, and the
  continuation ids are those of ``context + continuation`` past the context's."""
  n = len(context) - len(context.rstrip())
  if n:
    context, continuation = context[:-n], context[-n:] + continuation
  if not context:
    if tokenizer.eos_id is None:
      raise ValueError("empty context and the tokenizer has no EOS to stand in")
    return [tokenizer.eos_id], tokenizer.encode(continuation)
  whole = tokenizer.encode(context + continuation)
  ctx = tokenizer.encode(context)
  return ctx, whole[len(ctx):]


def _bucket(n: int, cap: int) -> int:
  return min(cap, max(32, 1 << (n - 1).bit_length()))


def loglikelihoods(model: nnx.Module, tokenizer: Tokenizer,
                   requests: Sequence[tuple[str, str]], *, batch_size: int = 8,
                   max_len: int = 2048, progress: bool = True
                   ) -> list[tuple[float, bool]]:
  """``(sum log p(continuation | context), all tokens greedy)`` per request.

  Requests are sorted by length, batched, right-padded to power-of-two lengths
  (few compilations) and run through one jitted scorer; no BOS is added.
  """
  pairs = [encode_pair(tokenizer, c, x) for c, x in requests]
  seqs = [(ctx + cont)[-(max_len + 1):] for ctx, cont in pairs]
  order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
  score = make_scorer(model)
  out: list[tuple[float, bool]] = [(0.0, False)] * len(seqs)
  bar = tqdm(total=len(seqs), unit="req", disable=not progress, desc="loglik")
  for start in range(0, len(order), batch_size):
    idx = order[start:start + batch_size]
    length = _bucket(len(seqs[idx[0]]) - 1, max_len)
    toks = np.zeros((batch_size, length), np.int32)
    tgts = np.zeros((batch_size, length), np.int32)
    mask = np.zeros((batch_size, length), bool)
    for row, i in enumerate(idx):
      s, n_cont = seqs[i], len(pairs[i][1])
      toks[row, :len(s) - 1], tgts[row, :len(s) - 1] = s[:-1], s[1:]
      mask[row, len(s) - 1 - n_cont:len(s) - 1] = True
    logprob, greedy = score(toks, tgts)
    for row, i in enumerate(idx):
      m = mask[row]
      out[i] = (float(np.sum(logprob[row][m], dtype=np.float64)),
                bool(np.all(greedy[row][m])))
    bar.update(len(idx))
  bar.close()
  return out


def multiple_choice_metrics(docs: Sequence[tasks.Doc],
                            results: Sequence[Sequence[tuple[float, bool]]]
                            ) -> dict:
  """``acc`` (argmax of summed log-likelihood) and ``acc_norm`` (argmax of
  log-likelihood per UTF-8 byte of the choice text)."""
  acc, acc_norm = [], []
  for doc, res in zip(docs, results):
    ll = np.array([r[0] for r in res])
    nbytes = np.array([len(c.encode("utf-8")) for c in doc.choices], float)
    acc.append(int(np.argmax(ll)) == doc.label)
    acc_norm.append(int(np.argmax(ll / np.maximum(nbytes, 1))) == doc.label)
  return dict(acc=float(np.mean(acc)), acc_norm=float(np.mean(acc_norm)),
              n=len(docs))


def accuracy_metrics(docs, results) -> dict:
  """``acc`` only (WinoGrande: the choices share one continuation)."""
  m = multiple_choice_metrics(docs, results)
  return dict(acc=m["acc"], n=m["n"])


def lambada_metrics(docs, results) -> dict:
  """``acc`` (the last word is the greedy continuation) and ``ppl``
  (``exp`` of minus the mean per-document log-likelihood)."""
  ll = [res[0][0] for res in results]
  return dict(acc=float(np.mean([res[0][1] for res in results])),
              ppl=math.exp(-float(np.mean(ll))), n=len(docs))


@dataclasses.dataclass(frozen=True)
class Task:
  """A reader of the task's public file format and its metrics."""

  read: Callable[..., list[tasks.Doc]]
  metrics: Callable[..., dict]


TASKS = {
    "arc_easy": Task(tasks.read_arc, multiple_choice_metrics),
    "arc_challenge": Task(tasks.read_arc, multiple_choice_metrics),
    "piqa": Task(tasks.read_piqa, multiple_choice_metrics),
    "hellaswag": Task(tasks.read_hellaswag, multiple_choice_metrics),
    "winogrande": Task(tasks.read_winogrande, accuracy_metrics),
    "boolq": Task(tasks.read_boolq, multiple_choice_metrics),
    "lambada": Task(tasks.read_lambada, lambada_metrics),
}


def evaluate(task: str, model: nnx.Module, tokenizer: Tokenizer, path: str, *,
             labels_path: str | None = None, limit: int | None = None,
             batch_size: int = 8, max_len: int = 2048,
             progress: bool = True) -> dict:
  """Runs one task (a key of ``TASKS``) on its local file; returns its metrics.

  ``labels_path`` is PIQA's separate labels file; ``limit`` keeps the first
  documents only.
  """
  if task not in TASKS:
    raise ValueError(f"unknown task {task!r} (known: {sorted(TASKS)})")
  spec = TASKS[task]
  docs = (spec.read(path, labels_path) if labels_path is not None
          else spec.read(path))[:limit]
  requests = [(c, x) for d in docs for c, x in zip(d.contexts, d.continuations)]
  flat = loglikelihoods(model, tokenizer, requests, batch_size=batch_size,
                        max_len=max_len, progress=progress)
  results, k = [], 0
  for d in docs:
    results.append(flat[k:k + len(d.contexts)])
    k += len(d.contexts)
  return spec.metrics(docs, results)
