"""Argument specs shared by tests/kernels and benchmarks/bench_linear.py."""

from sharq_jax.kernels.sharq_matmul.specs import heavy_activations, heavy_activations_np

# (M, K) of the preparation benchmarks: decode and prefill of Llama-3.1-8B inputs.
BENCH_PREP = ((16, 4096), (16, 14336), (4096, 4096), (4096, 14336), (16384, 4096),
              (16384, 14336))
# (M, K) checked bit for bit against the NumPy contract on the GPU.
DEVICE_CHECK_PREP = ((16, 4096), (37, 14336))

__all__ = ["BENCH_PREP", "DEVICE_CHECK_PREP", "heavy_activations", "heavy_activations_np"]
