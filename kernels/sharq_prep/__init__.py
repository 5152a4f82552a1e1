"""Fused SharQ activation preparation: RMSNorm → mask → backbone → residual (NVFP4)."""

from sharq_jax.kernels.sharq_prep.config import PrepConfig, default_config
from sharq_jax.kernels.sharq_prep.pallas_gpu import prep_stats, sharq_prep
from sharq_jax.kernels.sharq_prep.reference import (K_MULTIPLE, KOrder, PathMode,
                                                    Prepared, finite_amax,
                                                    from_nibble_planes, scale_from_amax,
                                                    sharq_prep_reference,
                                                    to_nibble_planes)

__all__ = ["PrepConfig", "default_config", "sharq_prep", "prep_stats", "PathMode",
           "Prepared", "KOrder", "to_nibble_planes", "from_nibble_planes",
           "sharq_prep_reference", "K_MULTIPLE", "finite_amax", "scale_from_amax"]
