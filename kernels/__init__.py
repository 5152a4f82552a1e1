"""Pallas kernels of sharq_jax (this folder is installed as `sharq_jax.kernels`).

One folder per op, each with an XLA/NumPy reference, the Pallas GPU kernel (Triton
lowering; interpret mode on the CPU for tests), a frozen tile config and defaults:

  sharq_prep/    fused activation preparation: optional RMSNorm → tensor scale →
                 4:8-pairs mask → NVFP4 backbone (block 32) → residual → NVFP4 residual
                 (block 16), float16 paths for the GEMM in the layout it reads, or
                 (exact mode) the doubled E2M1 codes as int8 with their block scales
                 (`sharq_prep`, `Prepared`, `PathLayout`)
  sharq_matmul/  packed FP4 weights (`pack_weight`, `PackedWeight`, `WeightLayout`), the
                 SharQ GEMM (`sharq_gemm`, AUTO by M and mode: the float16 MMA GEMV at
                 M <= 2, the int8 GEMV at M = 3-4 in exact mode, the MMA GEMV there in
                 fast mode, the packed tensor-core kernel to M = 64, the expanded-weight
                 prefill path beyond; the CUDA-core GEMV at M = 1 where the MMA GEMV's
                 tiles do not fit, the fragment GEMV on request) and
                 the full layer `sharq_matmul(x, packed_weight, ...)`
  dispatch.py    what sharq_jax.linear.sharq_dot(backend="pallas"|"auto") calls
  common.py      bit-exact numerics helpers shared by the kernels
  NOTES.md       roofline, predictions and H200 measurements per version
"""
