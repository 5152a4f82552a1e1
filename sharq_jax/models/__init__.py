"""Llama-family model definition (NNX) and its configuration."""

from sharq_jax.models.config import (Llama3RopeScaling, ModelConfig,
                                     from_hf_config, smollm2_135m)
from sharq_jax.models.llama import CausalLM
from sharq_jax.models.weights import (CheckpointError, expected_shapes,
                                      from_state_dict, hf_name)

__all__ = [
    "CausalLM", "CheckpointError", "Llama3RopeScaling", "ModelConfig",
    "expected_shapes", "from_hf_config", "from_state_dict", "hf_name",
    "smollm2_135m",
]
