"""Flax NNX layers: plain and SharQ-quantized linears, and model conversion."""

from sharq_jax.nn.convert import (ConversionReport, Rule, decoder_linears,
                                  quantize_model)
from sharq_jax.nn.linear import Linear
from sharq_jax.nn.sharq_linear import QuantizedParam, SharQLinear

__all__ = [
    "ConversionReport", "Linear", "QuantizedParam", "Rule", "SharQLinear",
    "decoder_linears", "quantize_model",
]
