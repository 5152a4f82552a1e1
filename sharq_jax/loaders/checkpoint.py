"""A checkpoint read from disk, before it becomes a model."""

from __future__ import annotations

import dataclasses

import numpy as np

from sharq_jax.loaders.tokenizer import Tokenizer
from sharq_jax.models.config import ModelConfig
from sharq_jax.models.llama import CausalLM
from sharq_jax.models.weights import from_state_dict


@dataclasses.dataclass(frozen=True, eq=False)
class Checkpoint:
  """Config, Hugging Face-named arrays, tokenizer (or None), and where from."""

  config: ModelConfig
  tensors: dict[str, np.ndarray]
  tokenizer: Tokenizer | None
  source: str

  def to_model(self, dtype) -> CausalLM:
    """The model with parameters cast to ``dtype`` (bfloat16 / float32)."""
    return from_state_dict(self.config.replace(dtype=dtype), self.tensors,
                           source=self.source)
