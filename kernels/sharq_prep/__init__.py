"""Fused SharQ activation preparation: RMSNorm → mask → backbone → residual (NVFP4)."""

from sharq_jax.kernels.sharq_prep.config import PrepConfig, default_config
from sharq_jax.kernels.sharq_prep.pallas_gpu import prep_stats, sharq_prep
from sharq_jax.kernels.sharq_prep.reference import (K_MULTIPLE, PathLayout, PathMode,
                                                    Prepared, finite_amax, int8_path_values,
                                                    scale_from_amax, sharq_prep_reference,
                                                    to_gemv_layout, to_layout, to_mma_layout)

__all__ = ["PrepConfig", "default_config", "sharq_prep", "prep_stats", "PathMode",
           "Prepared", "PathLayout", "to_gemv_layout", "to_layout", "to_mma_layout",
           "sharq_prep_reference", "K_MULTIPLE", "finite_amax", "scale_from_amax",
           "int8_path_values"]
