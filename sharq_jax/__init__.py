"""sharq_jax: FP4 (NVFP4, MXFP4, HiF4) quantization and the SharQ sparse-dense decomposition.

Core (pure functional, no Flax):
  formats     NVFP4 / MXFP4 / HiF4, QTensor, quantize / dequantize, nibble packing
  masks       N:M masks (4:8-pairs, 2:4, n:m), compress / expand
  decompose   the SharQ decomposition (backbone + residual against the quantized backbone)
  methods     the registry of DESIGN.md §2.6, quantize_weight
  linear      sharq_dot (XLA reference; Pallas dispatch)
  ste         straight-through estimators for training code
"""

from sharq_jax import decompose, errors, formats, linear, masks, methods, quantizers, ste
from sharq_jax.decompose import Decomposition, SharQConfig
from sharq_jax.errors import BadInput
from sharq_jax.formats import HiF4, MXFP4, NVFP4, QTensor, dequantize, quantize
from sharq_jax.linear import Backend, sharq_dot
from sharq_jax.masks import NMPattern, nm_mask
from sharq_jax.methods import METHODS, Method, QuantizedWeight, get_method, quantize_weight

__version__ = "0.1.0"
