"""SharQ GEMM: prepared activations × packed FP4 weights (one weight read, two paths)."""

from sharq_jax.kernels.sharq_matmul.api import (GEMV_AUTO_MAX_M, INT8_GEMV_AUTO_M,
                                                MMA_GEMV_AUTO_MAX_M,
                                                PACKED_MAX_M, GemmImpl,
                                                prep_layout, resolve_impl,
                                                sharq_gemm, sharq_gemm_reference,
                                                sharq_matmul)
from sharq_jax.kernels.sharq_matmul.config import (FRAGMENT_GEMV_MAX_M, GEMV_MAX_M,
                                                   MMA_GEMV_MAX_M, DenseGemmConfig,
                                                   FragmentGemvConfig, GemvConfig, Interleave,
                                                   MmaGemvConfig, Orient, PackedGemmConfig,
                                                   default_dense_config,
                                                   default_fragment_gemv_config,
                                                   default_gemv_config,
                                                   default_int8_gemv_config,
                                                   default_mma_gemv_config,
                                                   default_packed_config)
from sharq_jax.kernels.sharq_matmul.fragment_gemv_gpu import fragment_gemv
from sharq_jax.kernels.sharq_matmul.gemv_gpu import gemv
from sharq_jax.kernels.sharq_matmul.int8_gemv_gpu import INT8_GEMV_MAX_M, int8_gemv
from sharq_jax.kernels.sharq_matmul.mma_gemv_gpu import mma_gemv
from sharq_jax.kernels.sharq_matmul.packing import (PackedWeight, WeightLayout,
                                                    expand_weight, pack_weight,
                                                    pack_weight_from_float)
from sharq_jax.kernels.sharq_matmul.pallas_gpu import (dense_gemm, expand_weight_pallas,
                                                       packed_gemm)

__all__ = ["GemmImpl", "GEMV_AUTO_MAX_M", "GEMV_MAX_M", "GemvConfig", "default_gemv_config",
           "gemv", "MMA_GEMV_AUTO_MAX_M", "MMA_GEMV_MAX_M", "MmaGemvConfig",
           "default_mma_gemv_config", "mma_gemv", "INT8_GEMV_MAX_M", "INT8_GEMV_AUTO_M",
           "default_int8_gemv_config",
           "int8_gemv", "FRAGMENT_GEMV_MAX_M", "FragmentGemvConfig",
           "default_fragment_gemv_config", "fragment_gemv", "PACKED_MAX_M", "prep_layout",
           "resolve_impl", "sharq_gemm",
           "sharq_gemm_reference", "sharq_matmul", "DenseGemmConfig", "Interleave",
           "Orient", "PackedGemmConfig", "default_dense_config", "default_packed_config",
           "PackedWeight", "WeightLayout", "expand_weight", "pack_weight", "pack_weight_from_float",
           "dense_gemm", "expand_weight_pallas", "packed_gemm"]
