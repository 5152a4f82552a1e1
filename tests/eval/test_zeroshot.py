"""Zero-shot: public file formats, lm-eval request building, batched scoring."""

import os

import jax.numpy as jnp
import numpy as np
import pytest
import tokenizers
from flax import nnx

from sharq_jax import models
from sharq_jax.eval import tasks, zeroshot
from sharq_jax.loaders.tokenizer import byte_level_bpe

DATA = os.path.join(os.path.dirname(__file__), "data")


def _path(name):
  return os.path.join(DATA, name)


@pytest.fixture(scope="module")
def tok():
  alphabet = sorted(tokenizers.pre_tokenizers.ByteLevel.alphabet())
  return byte_level_bpe(alphabet + ["<|endoftext|>"], [], pre="gpt2",
                        token_types=[1] * 256 + [3], eos_id=256)


@pytest.fixture(scope="module")
def model():
  cfg = models.ModelConfig(vocab_size=257, hidden_size=32, intermediate_size=64,
                           num_layers=2, num_heads=4, num_kv_heads=2, head_dim=8,
                           dtype=jnp.float32)
  return models.CausalLM(cfg, rngs=nnx.Rngs(1))


def test_arc_both_layouts():
  for name in ("arc_allenai.jsonl", "arc_hf.jsonl"):
    docs = tasks.read_arc(_path(name))
    assert docs[0].contexts[0] == ("Question: Which gas do plants absorb from the "
                                   "air?\nAnswer:")
    assert docs[0].continuations == (" oxygen", " carbon dioxide", " helium", " neon")
    assert [d.label for d in docs] == [1, 0]
    assert len(docs[1].choices) == 3


def test_piqa_labels_file():
  docs = tasks.read_piqa(_path("piqa.jsonl"), _path("piqa-labels.lst"))
  assert docs[1].contexts[0] == "Question: How do you dry wet shoes?\nAnswer:"
  assert docs[1].continuations[1] == " Stuff them with newspaper and leave them in the air."
  assert [d.label for d in docs] == [0, 1]


def test_hellaswag_preprocessing():
  docs = tasks.read_hellaswag(_path("hellaswag.jsonl"))
  assert docs[0].contexts[0] == (
      "Removing ice from car: Then, the man writes over the snow covering the "
      "window of a car, and a woman wearing winter clothes smiles. Then")
  assert docs[0].continuations[3] == " , the man continues removing the snow on his car."
  assert docs[1].contexts[0] == ("Home and Garden: How to grow a lemon tree. Choose a "
                                 "sunny spot. You will need at least eight hours")
  assert docs[1].choices == ("of sun a day. Lemons love light.", "of rain each week.",
                             "of shade. Water it.", "of snow.")
  assert [d.label for d in docs] == [3, 0]


def test_winogrande_partial_scoring():
  docs = tasks.read_winogrande(_path("winogrande.jsonl"))
  assert docs[0].contexts == ("The trophy doesn't fit into the suitcase because the trophy",
                              "The trophy doesn't fit into the suitcase because the suitcase")
  assert docs[0].continuations == (" is too large.", " is too large.")
  assert [d.label for d in docs] == [0, 1]


def test_boolq_both_layouts():
  for name in ("boolq.jsonl", "boolq_superglue.jsonl"):
    docs = tasks.read_boolq(_path(name))
    assert docs[0].contexts[0] == ("The Sun is the star at the center of the Solar "
                                   "System.\nQuestion: is the sun a star?\nAnswer:")
    assert docs[0].continuations == (" no", " yes")
    assert [d.label for d in docs] == [1, 0]


def test_lambada_last_word():
  docs = tasks.read_lambada(_path("lambada.jsonl"))
  assert docs[1].contexts == ("He paid for the coffee and drank the",)
  assert docs[1].continuations == (" coffee",)


def test_encode_pair_moves_trailing_space(tok):
  ctx, cont = zeroshot.encode_pair(tok, "Answer: ", "yes")
  assert ctx == tok.encode("Answer:") and cont == tok.encode(" yes")
  ctx, cont = zeroshot.encode_pair(tok, "", "hi")
  assert ctx == [256] and cont == tok.encode("hi")


def test_loglikelihoods_match_unbatched(model, tok):
  """Batched, sorted, padded scoring equals one-sequence-at-a-time scoring."""
  reqs = [("Question: a?\nAnswer:", " yes"), ("x", " a much longer continuation"),
          ("The trophy is", " big."), ("", "start"), ("ab", " c")]
  got = zeroshot.loglikelihoods(model, tok, reqs, batch_size=2, progress=False)
  for (c, x), (ll, greedy) in zip(reqs, got):
    ctx, cont = zeroshot.encode_pair(tok, c, x)
    seq = np.array(ctx + cont)
    logits = np.asarray(model(jnp.asarray(seq[None, :-1])))[0].astype(np.float64)
    logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1,
                           keepdims=True)) - logits.max(-1, keepdims=True)
    pos = np.arange(len(ctx) - 1, len(seq) - 1)
    want = logp[pos, seq[pos + 1]].sum()
    assert ll == pytest.approx(want, rel=1e-5, abs=1e-4)
    assert greedy == bool(np.all(logits[pos].argmax(-1) == seq[pos + 1]))


def test_metrics_normalise_by_bytes():
  """acc compares summed log-likelihoods, acc_norm divides by UTF-8 bytes."""
  doc = tasks.Doc(contexts=("q",) * 2, continuations=(" éééé", " a"),
                  choices=("éééé", "a"), label=0)
  # sums -2 vs -1: acc picks "a"; per byte -2/8 vs -1/1: acc_norm picks "éééé".
  m = zeroshot.multiple_choice_metrics([doc], [[(-2.0, False), (-1.0, False)]])
  assert m == dict(acc=0.0, acc_norm=1.0, n=1)
  # "éé" is 4 bytes but 2 characters: per byte -3.6/4 > -3/3 picks it, per
  # character (-1.8 vs -1) would not.
  doc = tasks.Doc(contexts=("q",) * 2, continuations=(" éé", " abc"),
                  choices=("éé", "abc"), label=0)
  m = zeroshot.multiple_choice_metrics([doc], [[(-3.6, False), (-3.0, False)]])
  assert m == dict(acc=0.0, acc_norm=1.0, n=1)


def test_lambada_metrics():
  docs = tasks.read_lambada(_path("lambada.jsonl"))
  m = zeroshot.lambada_metrics(docs, [[(-1.0, True)], [(-3.0, False)]])
  assert m["acc"] == 0.5 and m["ppl"] == pytest.approx(np.exp(2.0))


@pytest.mark.parametrize("task,files", [
    ("arc_easy", ("arc_allenai.jsonl",)), ("arc_challenge", ("arc_hf.jsonl",)),
    ("piqa", ("piqa.jsonl", "piqa-labels.lst")), ("hellaswag", ("hellaswag.jsonl",)),
    ("winogrande", ("winogrande.jsonl",)), ("boolq", ("boolq.jsonl",)),
    ("lambada", ("lambada.jsonl",))])
def test_evaluate_every_task(model, tok, task, files):
  paths = [_path(f) for f in files]
  m = zeroshot.evaluate(task, model, tok, paths[0],
                        labels_path=paths[1] if len(paths) > 1 else None,
                        batch_size=4, progress=False)
  assert m["n"] == 2 and 0.0 <= m["acc"] <= 1.0
  assert ("ppl" in m) == (task == "lambada")
  assert ("acc_norm" in m) == (task not in ("lambada", "winogrande"))


def test_unknown_task(model, tok):
  with pytest.raises(ValueError, match="unknown task"):
    zeroshot.evaluate("mmlu", model, tok, _path("boolq.jsonl"))
