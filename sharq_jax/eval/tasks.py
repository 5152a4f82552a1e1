"""Zero-shot task files in their public formats → lm-eval-harness style requests.

Each reader returns ``Doc`` s whose prompts follow lm-eval-harness (v0.4) task
definitions: the continuation of choice ``i`` is ``" " + choice_i`` after the
context (WinoGrande: one context per option, shared continuation).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re


@dataclasses.dataclass(frozen=True)
class Doc:
  """One question: a (context, continuation) request per choice and the answer.

  ``choices`` are the choice texts whose UTF-8 byte length normalises
  ``acc_norm`` (as lm-eval's ``len(choice)`` for ASCII text).
  """

  contexts: tuple[str, ...]
  continuations: tuple[str, ...]
  choices: tuple[str, ...]
  label: int


def _jsonl(path: str) -> list[dict]:
  if not os.path.isfile(path):
    raise FileNotFoundError(f"task file not found: {path}")
  rows = []
  with open(path, encoding="utf-8") as f:
    for i, line in enumerate(f, 1):
      if line.strip():
        try:
          rows.append(json.loads(line))
        except json.JSONDecodeError as e:
          raise ValueError(f"{path}:{i}: invalid JSON ({e})") from e
  return rows


def _mc(context: str, choices, label: int) -> Doc:
  choices = tuple(choices)
  return Doc(contexts=(context,) * len(choices),
             continuations=tuple(" " + c for c in choices),
             choices=choices, label=int(label))


def read_arc(path: str) -> list[Doc]:
  """ARC-Easy/Challenge jsonl (AllenAI ``question.stem`` or HF flat layout)."""
  docs = []
  for row in _jsonl(path):
    q = row["question"]
    if isinstance(q, dict):  # AllenAI release
      stem, texts = q["stem"], [c["text"] for c in q["choices"]]
      labels = [c["label"] for c in q["choices"]]
    else:  # Hugging Face ai2_arc
      stem, texts, labels = q, row["choices"]["text"], row["choices"]["label"]
    docs.append(_mc(f"Question: {stem}\nAnswer:", texts,
                    labels.index(row["answerKey"])))
  return docs


def read_piqa(path: str, labels_path: str | None = None) -> list[Doc]:
  """PIQA jsonl (goal, sol1, sol2) with labels from ``labels_path`` (one per
  line, the public ``*-labels.lst``) or from a ``label`` field."""
  rows = _jsonl(path)
  if labels_path is not None:
    with open(labels_path, encoding="utf-8") as f:
      labels = [int(x) for x in f.read().split()]
    if len(labels) != len(rows):
      raise ValueError(f"{labels_path}: {len(labels)} labels for {len(rows)} "
                       f"rows of {path}")
  else:
    labels = [int(r["label"]) for r in rows]
  return [_mc(f"Question: {r['goal']}\nAnswer:", [r["sol1"], r["sol2"]], y)
          for r, y in zip(rows, labels)]


def _hellaswag_clean(text: str) -> str:
  text = text.strip().replace(" [title]", ". ")
  return re.sub(r"\[.*?\]", "", text).replace("  ", " ")


def read_hellaswag(path: str) -> list[Doc]:
  """HellaSwag jsonl (ctx_a, ctx_b, activity_label, endings, label)."""
  docs = []
  for r in _jsonl(path):
    ctx = r["ctx_a"] + " " + r["ctx_b"].capitalize()
    query = _hellaswag_clean(r["activity_label"] + ": " + ctx)
    docs.append(_mc(query, [_hellaswag_clean(e) for e in r["endings"]],
                    int(r["label"])))
  return docs


def read_winogrande(path: str) -> list[Doc]:
  """WinoGrande jsonl (sentence with "_", option1, option2, answer "1"/"2").

  Partial scoring: context = sentence up to "_" with the option filled in,
  continuation = the rest of the sentence (shared by both options).
  """
  docs = []
  for r in _jsonl(path):
    s = r["sentence"]
    i = s.index("_")
    options = (r["option1"], r["option2"])
    rest = " " + s[i + 1:].strip()
    docs.append(Doc(contexts=tuple(s[:i] + o for o in options),
                    continuations=(rest, rest), choices=options,
                    label=int(r["answer"]) - 1))
  return docs


def read_boolq(path: str) -> list[Doc]:
  """BoolQ jsonl (passage, question, ``answer`` bool or SuperGLUE ``label``)."""
  docs = []
  for r in _jsonl(path):
    label = r["answer"] if "answer" in r else r["label"]
    docs.append(_mc(f"{r['passage']}\nQuestion: {r['question']}?\nAnswer:",
                    ["no", "yes"], int(bool(label))))
  return docs


def read_lambada(path: str) -> list[Doc]:
  """LAMBADA jsonl (``text``): predict the last word; one continuation."""
  docs = []
  for r in _jsonl(path):
    context, word = r["text"].rsplit(" ", 1)
    docs.append(Doc(contexts=(context,), continuations=(" " + word,),
                    choices=(word,), label=0))
  return docs
