"""FP4 block formats: NVFP4, MXFP4, HiF4, their element grids and the QTensor API."""

from sharq_jax.formats.base import (Format, dequantize, finite_amax, quantize,
                                    quantize_dequantize, quantize_unchecked)
from sharq_jax.formats.elements import (E2M1_CODE_VALUES, E2M1_MAGNITUDES, e2m1_round,
                                        e2m1_to_nibbles, nibbles_to_e2m1, pack_nibbles,
                                        unpack_nibbles)
from sharq_jax.formats.hif4 import HiF4, decode_e6m2, round_e6m2
from sharq_jax.formats.mxfp4 import MXFP4, ScaleRounding
from sharq_jax.formats.nvfp4 import NVFP4, ScaleGranularity, global_scale, scale_from_amax
from sharq_jax.qtensor import QTensor

__all__ = [
    "Format", "NVFP4", "MXFP4", "HiF4", "ScaleGranularity", "ScaleRounding", "QTensor",
    "quantize", "quantize_unchecked", "dequantize", "quantize_dequantize", "finite_amax", "global_scale", "scale_from_amax",
    "e2m1_round", "e2m1_to_nibbles", "nibbles_to_e2m1", "pack_nibbles", "unpack_nibbles",
    "E2M1_MAGNITUDES", "E2M1_CODE_VALUES", "round_e6m2", "decode_e6m2",
]
