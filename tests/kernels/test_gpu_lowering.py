"""Every Pallas kernel lowers to Triton IR for an NVIDIA GPU, checked on the CPU.

Interpret mode runs the kernels' arithmetic but not their Triton lowering, where
power-of-two tensor sizes, strided slices and in-kernel control flow can still fail.
jax can lower a program for CUDA without a GPU (cross-platform lowering); the Triton
compile itself happens only on a GPU (benchmarks/ run that).
"""

import jax
import jax.numpy as jnp
import pytest

from sharq_jax.kernels.sharq_matmul import (DenseGemmConfig, GemvConfig, MmaGemvConfig,
                                            PackedGemmConfig, WeightLayout,
                                            pack_weight_from_float, sharq_gemm)
from sharq_jax.kernels.sharq_matmul.pallas_gpu import expand_weight_pallas
from sharq_jax.kernels.sharq_prep import PathLayout, PathMode, PrepConfig, Prepared, sharq_prep


def _lower_for_cuda(fn, *args) -> str:
  try:
    lowered = jax.jit(fn).trace(*args).lower(lowering_platforms=("cuda",))
  except (NotImplementedError, RuntimeError) as ex:  # no CUDA lowering in this jaxlib
    if "pallas" in str(ex).lower() or "triton" in str(ex).lower():
      raise
    pytest.skip(f"cross-platform lowering for cuda unavailable: {ex}")
  return lowered.as_text()


@pytest.fixture(scope="module")
def weight():
  return pack_weight_from_float(jnp.linspace(-1, 1, 64 * 448).reshape(64, 448) * 0.1)


def _prepared(m, k, mode=PathMode.EXACT):
  return Prepared(paths=(jnp.ones((m, k), jnp.float16),) * mode.num_paths,
                  scale=jnp.float32(1), rstd=None, mode=mode)


@pytest.mark.parametrize("cfg,layout", [(PrepConfig(8, 64, 2, in_kernel_amax=True),
                                          PathLayout.MMA),
                                         (PrepConfig(1, 64, 2, in_kernel_amax=True),
                                          PathLayout.GEMV),
                                         (PrepConfig(16, 64, 4), PathLayout.GEMV)])
@pytest.mark.parametrize("m,k", [(1, 448), (5, 448 * 32)])
def test_prep_lowers(cfg, layout, m, k):
  text = _lower_for_cuda(lambda x: sharq_prep(x, config=cfg, layout=layout),
                         jnp.ones((m, k), jnp.bfloat16))
  assert "__gpu$xla.gpu.triton" in text and "sharq_prep" in text


@pytest.mark.parametrize("m", [1, 3, 8])
@pytest.mark.parametrize("split", [1, 7])
def test_gemv_lowers(weight, m, split):
  # prefetch with and without split-K (m = 3 without it), row groups throughout
  cfg = GemvConfig(block_n=16, block_k=64, split_k=split, prefetch=m != 3, row_groups=2)
  text = _lower_for_cuda(lambda p, w: sharq_gemm(p, w, impl="gemv", config=cfg),
                         _prepared(m, 448), weight)
  assert "sharq_gemv" in text


@pytest.mark.parametrize("m,mode,warps", [(1, PathMode.EXACT, 4), (3, PathMode.FAST, 8),
                                          (2, PathMode.EXACT, 4)])
def test_mma_gemv_lowers(m, mode, warps):
  # the kernel with its inline PTX strings lowers to Triton IR (ptxas runs on a GPU only)
  w = pack_weight_from_float(jnp.linspace(-1, 1, 128 * 512).reshape(128, 512) * 0.1)
  # one step ahead at m = 1; at m = 3 three with the activations and the NaN-row flags
  # (4 steps per split: one ring iteration and a peeled tail step); at m = 2 code words
  # 4 ahead, the activations 2 (rings of two depths in one unrolled body)
  cfg = {1: MmaGemvConfig(split_k=2, num_warps=warps, prefetch=1),
         3: MmaGemvConfig(split_k=2, num_warps=warps, prefetch=3, prefetch_activations=True,
                          isolate_nan_rows=True),
         2: MmaGemvConfig(split_k=1, num_warps=warps, prefetch=4, prefetch_activations=2,
                          queue_words=True, pin_loads=True)}[m]
  text = _lower_for_cuda(lambda p, ww: sharq_gemm(p, ww, impl="mma_gemv", config=cfg),
                         _prepared(m, 512, mode), w)
  assert "sharq_mma_gemv" in text
  if warps == 4:  # the tiled weight: a program's step is one contiguous tile
    text = _lower_for_cuda(lambda p, ww: sharq_gemm(p, ww, impl="mma_gemv", config=cfg),
                           _prepared(m, 512, mode), w.to_layout(WeightLayout.TILES_64))
    assert "sharq_mma_gemv" in text


@pytest.mark.parametrize("m,layout,cfg", [
    (1, WeightLayout.TILES_64, MmaGemvConfig(split_k=2, prefetch=4, queue_words=True,
                                             pin_loads=True)),
    (3, WeightLayout.ROWS, MmaGemvConfig(split_k=1, prefetch=2, prefetch_activations=1,
                                         queue_words=True)),
    (2, WeightLayout.ROWS, MmaGemvConfig(split_k=2, num_warps=8, prefetch=4,
                                         queue_words=True))])
def test_int8_gemv_and_its_prep_lower(m, layout, cfg):
  w = pack_weight_from_float(jnp.linspace(-1, 1, 128 * 512).reshape(128, 512) * 0.1)
  prepared = Prepared(paths=(jnp.ones((m, 512), jnp.int8),) * 2, scale=jnp.float32(1),
                      rstd=None, mode=PathMode.EXACT, layout=PathLayout.INT8,
                      block_scales=(jnp.ones((m, 32), jnp.float32),) * 2)
  text = _lower_for_cuda(lambda p, ww: sharq_gemm(p, ww, impl="int8_gemv", config=cfg),
                         prepared, w.to_layout(layout))
  assert "sharq_int8_gemv" in text
  text = _lower_for_cuda(lambda x: sharq_prep(x, layout=PathLayout.INT8),
                         jnp.ones((m, 512), jnp.bfloat16))
  assert "sharq_prep" in text


def test_packed_dense_and_expand_lower(weight):
  packed = PackedGemmConfig(block_m=16, block_n=32, block_k=64, split_k=7)
  assert "sharq_packed_gemm" in _lower_for_cuda(
      lambda p, w: sharq_gemm(p, w, impl="packed", config=packed), _prepared(16, 448), weight)
  dense = DenseGemmConfig(block_m=32, block_n=32, block_k=64)
  assert "sharq_dense_gemm" in _lower_for_cuda(
      lambda p, w: sharq_gemm(p, w, impl="expanded_pallas", config=dense),
      _prepared(40, 448, PathMode.FAST), weight)
  assert "sharq_expand_weight" in _lower_for_cuda(
      lambda w: expand_weight_pallas(w, block_n=32, block_k=64), weight)
