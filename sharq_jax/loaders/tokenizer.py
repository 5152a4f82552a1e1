"""Tokenizers: a thin wrapper over `tokenizers` and a byte-level BPE built from GGUF."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import tokenizers
from tokenizers import Regex, decoders, models, pre_tokenizers


@dataclasses.dataclass(frozen=True, eq=False)
class Tokenizer:
  """Text ↔ token ids. ``encode`` never adds special tokens unless asked."""

  backend: tokenizers.Tokenizer
  bos_id: int | None = None
  eos_id: int | None = None

  @property
  def vocab_size(self) -> int:
    """Number of ids, added tokens included."""
    return self.backend.get_vocab_size(with_added_tokens=True)

  def encode(self, text: str, *, add_bos: bool = False) -> list[int]:
    """Token ids of ``text`` (no BOS unless ``add_bos``)."""
    ids = self.backend.encode(text, add_special_tokens=False).ids
    if add_bos:
      if self.bos_id is None:
        raise ValueError("this tokenizer has no BOS token")
      ids = [self.bos_id] + ids
    return ids

  def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
    """``encode`` of many texts at once (parallel in the Rust backend)."""
    encs = self.backend.encode_batch(list(texts), add_special_tokens=False)
    return [e.ids for e in encs]

  def decode(self, ids: Sequence[int]) -> str:
    """Text of ``ids`` (special tokens kept)."""
    return self.backend.decode(list(ids), skip_special_tokens=False)


_GPT2_SPLIT = (r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+"
               r"|\s+(?!\S)|\s+")
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+"
                 r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def _regex_then_bytes(pattern: str):
  return lambda: pre_tokenizers.Sequence([
      pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
      pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])


def _digits_then_gpt2():
  return pre_tokenizers.Sequence([
      pre_tokenizers.Digits(individual_digits=True),
      pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])


# llama.cpp ``tokenizer.ggml.pre`` name → pre-tokenizer with the same splits.
PRE_TOKENIZERS = {
    "default": _regex_then_bytes(_GPT2_SPLIT),
    "gpt2": _regex_then_bytes(_GPT2_SPLIT),
    "smollm": _digits_then_gpt2,
    "starcoder": _digits_then_gpt2,
    "refact": _digits_then_gpt2,
    "codeshell": _digits_then_gpt2,
    "llama-bpe": _regex_then_bytes(_LLAMA3_SPLIT),
    "llama3": _regex_then_bytes(_LLAMA3_SPLIT),
    "smaug-bpe": _regex_then_bytes(_LLAMA3_SPLIT),
    "qwen2": _regex_then_bytes(_QWEN2_SPLIT),
}

CONTROL_TOKEN_TYPE = 3  # llama.cpp token type of special (control) tokens


def byte_level_bpe(tokens: Sequence[str], merges: Sequence[str], *, pre: str,
                   token_types: Sequence[int] = (), bos_id: int | None = None,
                   eos_id: int | None = None) -> Tokenizer:
  """Byte-level BPE from a GGUF vocabulary (``tokenizer.ggml.model == "gpt2"``).

  ``tokens`` are in GPT-2's byte-to-unicode spelling, ``merges`` are "a b"
  strings, ``pre`` is llama.cpp's pre-tokenizer name (a key of
  ``PRE_TOKENIZERS``); control tokens are matched whole, as in llama.cpp.
  """
  if pre not in PRE_TOKENIZERS:
    raise ValueError(f"unsupported GGUF pre-tokenizer {pre!r} "
                     f"(supported: {sorted(PRE_TOKENIZERS)})")
  vocab = {tok: i for i, tok in enumerate(tokens)}
  pairs = [tuple(m.split(" ", 1)) for m in merges]
  backend = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=pairs,
                                            fuse_unk=False, byte_fallback=False))
  backend.pre_tokenizer = PRE_TOKENIZERS[pre]()
  backend.decoder = decoders.ByteLevel()
  special = [tokenizers.AddedToken(tokens[i], special=True, normalized=False)
             for i, t in enumerate(token_types) if t == CONTROL_TOKEN_TYPE]
  backend.add_special_tokens(special)
  return Tokenizer(backend=backend, bos_id=bos_id, eos_id=eos_id)
