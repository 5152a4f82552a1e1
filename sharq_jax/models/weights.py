"""Building a ``CausalLM`` from a Hugging Face-named state dict."""

from __future__ import annotations

from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

from sharq_jax.models.config import ModelConfig
from sharq_jax.models.llama import CausalLM


class CheckpointError(ValueError):
  """A checkpoint file is missing, truncated or does not fit the model."""


def hf_name(path: tuple) -> str:
  """Hugging Face tensor name of an NNX parameter path."""
  name = ".".join(str(p) for p in path)
  return name if name == "lm_head.weight" else "model." + name


def abstract_model(cfg: ModelConfig) -> CausalLM:
  """The model's structure with shape-only parameters (allocates nothing)."""
  return nnx.eval_shape(lambda: CausalLM(cfg, rngs=nnx.Rngs(0)))


def expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
  """HF tensor name → shape of every parameter the model needs."""
  _, state = nnx.split(abstract_model(cfg))
  return {hf_name(p): tuple(v.shape) for p, v in nnx.to_flat_state(state)}


def from_state_dict(cfg: ModelConfig, tensors: Mapping[str, np.ndarray], *,
                    source: str = "checkpoint") -> CausalLM:
  """Builds the model from HF-named arrays, cast to ``cfg.dtype``.

  Raises ``CheckpointError`` naming ``source`` and the tensor when a tensor is
  missing or has the wrong shape.
  """
  graphdef, state = nnx.split(abstract_model(cfg))
  filled = []
  for path, var in nnx.to_flat_state(state):
    name = hf_name(path)
    if name not in tensors:
      raise CheckpointError(f"{source}: tensor {name!r} is missing")
    arr = np.asarray(tensors[name])
    if tuple(arr.shape) != tuple(var.shape):
      raise CheckpointError(
          f"{source}: tensor {name!r} has shape {tuple(arr.shape)}, "
          f"the model expects {tuple(var.shape)}")
    filled.append((path, var.replace(jnp.asarray(arr, dtype=cfg.dtype))))
  return nnx.merge(graphdef, nnx.from_flat_state(filled))
