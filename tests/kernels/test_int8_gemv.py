"""The int8 GEMV and the PathLayout.INT8 preparation (interpret mode) against float32
XLA references, the core decomposition and the NumPy contract."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sharq_jax import methods
from sharq_jax.kernels.sharq_matmul import (GemmImpl, MmaGemvConfig, WeightLayout,
                                            default_int8_gemv_config, int8_gemv, pack_weight,
                                            prep_layout, resolve_impl, sharq_gemm,
                                            sharq_gemm_reference, sharq_matmul)
from sharq_jax.kernels.sharq_prep import (PathLayout, PathMode, sharq_prep,
                                          sharq_prep_reference, to_layout)
from sharq_jax.kernels.sharq_prep.reference import sharq_prep_numpy
from tests.kernels import data
from tests.kernels.xla_ops import ops_outside_kernels

_CFG = MmaGemvConfig(split_k=2, prefetch=2, queue_words=True)


@pytest.fixture(scope="module")
def weight():
  w = data.heavy((128, 256), seed=11, scale=0.05)
  return pack_weight(methods.quantize_weight(w, "sharq-nvfp4"))


def _x(m, seed=4, k=256):
  return data.heavy((m, k), seed=seed, dtype=jnp.bfloat16)


def test_int8_prep_holds_the_core_codes_and_scales():
  """The kernel writes the core decomposition's codes (doubled) and block scales; as
  float16 paths they are the float16 prep's bit for bit, and the NumPy contract's."""
  x = _x(5).at[1, 9].set(jnp.nan).at[3, 200].set(-jnp.inf)
  got = sharq_prep(x, layout=PathLayout.INT8, interpret=True)
  ref = sharq_prep_reference(x, layout=PathLayout.INT8)
  assert [p.dtype for p in got.paths] == [jnp.int8] * 2
  assert [s.shape for s in got.block_scales] == [(5, 16)] * 2
  for codes, want_codes, scales, want_scales in zip(got.paths, ref.paths, got.block_scales,
                                                    ref.block_scales):
    np.testing.assert_array_equal(np.asarray(scales), np.asarray(want_scales))  # NaN too
    finite = np.repeat(np.isfinite(np.asarray(scales)), 16, axis=-1)
    np.testing.assert_array_equal(np.asarray(codes)[finite], np.asarray(want_codes)[finite])
    assert not np.asarray(codes)[~finite].any()  # a non-finite block's codes are 0
  # rows 1 and 3: the backbone's NaN 32-block scale twice, and the residual's two
  # 16-blocks under it (the residual is measured against the NaN backbone block)
  assert [int(np.isnan(np.asarray(d)).sum()) for d in got.block_scales] == [4, 4]
  f16 = sharq_prep(x, interpret=True)
  want, s = sharq_prep_numpy(x)
  assert float(got.scale) == float(s)
  for a, b, c in zip(got.in_mma_layout().paths, f16.paths, want):
    np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))
    np.testing.assert_array_equal(np.asarray(a, np.float32), c)


def test_int8_prep_with_rmsnorm_matches_the_float16_prep():
  x = _x(3, seed=9)
  gamma = (1 + 0.1 * data.heavy((256,), seed=2)).astype(jnp.bfloat16)
  got = sharq_prep(x, gamma=gamma, layout=PathLayout.INT8, interpret=True)
  f16 = sharq_prep(x, gamma=gamma, interpret=True)
  for a, b in zip(got.in_mma_layout().paths, f16.paths):
    np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))


@pytest.mark.parametrize("m", [1, 2, 3])
@pytest.mark.parametrize("layout", list(WeightLayout))
def test_int8_gemv_matches_the_reference(weight, m, layout):
  prep = sharq_prep(_x(m, seed=m), layout=PathLayout.INT8, interpret=True)
  ref = sharq_gemm_reference(prep, weight)
  w = weight.to_layout(layout)
  for cfg in (_CFG, MmaGemvConfig(split_k=1, prefetch=1, prefetch_activations=1,
                                  queue_words=True)):
    y = sharq_gemm(prep, w, impl="int8_gemv", config=cfg, interpret=True)
    assert y.shape == (m, 128) and data.rel(y, ref) < 1e-6
  # the kernel function itself, with a bias and another output dtype
  bias = jnp.linspace(-1, 1, 128)
  y = int8_gemv(prep.paths, prep.block_scales, w, act_scale=prep.scale, bias=bias,
                out_dtype=jnp.bfloat16, config=_CFG, interpret=True)
  assert y.dtype == jnp.bfloat16
  assert data.rel(y, ref + bias) < 1e-2


def test_bad_input_poisons_its_rows_and_tokens_only(weight):
  # NaN/Inf weight blocks: those output columns; a NaN activation: its token's row.
  w = methods.quantize_weight(data.heavy((128, 256), seed=11, scale=0.05)
                              .at[3, 40].set(jnp.nan).at[70, 255].set(jnp.inf), "sharq-nvfp4")
  pw = pack_weight(w).to_layout(WeightLayout.TILES_64)
  prep = sharq_prep(_x(2), layout=PathLayout.INT8, interpret=True)
  y = sharq_gemm(prep, pw, impl="int8_gemv", config=_CFG, interpret=True)
  data.assert_nan_columns_and_close(y, sharq_gemm_reference(prep, pw), [3, 70])
  prep = sharq_prep(_x(2).at[1, 5].set(jnp.nan), layout=PathLayout.INT8, interpret=True)
  y = np.asarray(sharq_gemm(prep, weight, impl="int8_gemv", config=_CFG, interpret=True))
  assert np.isnan(y[1]).all() and not np.isnan(y[0]).any()


@pytest.mark.parametrize("m", [3, 4])
def test_auto_runs_it_in_exact_mode_at_m_3_and_4(weight, m):
  x = _x(m, seed=21)
  assert resolve_impl("auto", m, 128, 256) is GemmImpl.INT8_GEMV
  ops = ops_outside_kernels(lambda v: sharq_matmul(v, weight, interpret=True), x)
  assert "pallas_call" in ops and "transpose" not in ops
  jaxpr = str(jax.make_jaxpr(lambda v: sharq_matmul(v, weight, interpret=True))(x))
  assert "sharq_int8_gemv" in jaxpr and "sharq_mma_gemv" not in jaxpr
  y = sharq_matmul(x, weight, out_dtype=jnp.float32, interpret=True)
  ref = sharq_gemm_reference(sharq_prep(x, interpret=True), weight)
  assert data.rel(y, ref) < 1e-6
  y_int8 = sharq_matmul(x, weight, impl="int8_gemv", out_dtype=jnp.float32, interpret=True)
  np.testing.assert_array_equal(np.asarray(y), np.asarray(y_int8))
  # fast mode keeps the MMA GEMV (its Ŝ + R̂ path is not an E2M1 value)
  assert resolve_impl("auto", m, 128, 256, mode="fast") is GemmImpl.MMA_GEMV
  yf = sharq_matmul(x, weight, mode="fast", out_dtype=jnp.float32, interpret=True)
  assert data.rel(yf, ref) < 1e-2
  # AUTO on float16 paths never asks for the int8 layout; on INT8 paths with an
  # MmaGemvConfig it runs the int8 GEMV (no conversion to float16 paths)
  f16 = sharq_prep(x, interpret=True)
  assert data.rel(sharq_gemm(f16, weight, interpret=True), ref) < 1e-6
  p8 = sharq_prep(x, layout=PathLayout.INT8, interpret=True)
  jaxpr = str(jax.make_jaxpr(lambda p: sharq_gemm(p, weight, config=_CFG,
                                                   interpret=True))(p8))
  assert "sharq_int8_gemv" in jaxpr


def test_default_config_splits_k_16_ways_where_it_can():
  assert default_int8_gemv_config(1, 4096, 4096).split_k == 16
  assert default_int8_gemv_config(1, 4096, 14336).split_k == 16
  assert default_int8_gemv_config(4, 128, 256).split_k == 4  # K = 256: 4 steps of 64


def test_wrong_inputs_raise_clear_errors(weight):
  x = _x(2)
  with pytest.raises(ValueError, match="exact mode"):
    sharq_prep(x, mode=PathMode.FAST, layout=PathLayout.INT8, interpret=True)
  with pytest.raises(ValueError, match="exact mode"):
    sharq_prep_reference(x, mode=PathMode.FAST, layout=PathLayout.INT8)
  with pytest.raises(ValueError, match="PathLayout.INT8"):
    sharq_gemm(sharq_prep(x, interpret=True), weight, impl="int8_gemv", interpret=True)
  with pytest.raises(ValueError, match="not a column order"):
    to_layout(jnp.ones((2, 256), jnp.float16), PathLayout.INT8)
  with pytest.raises(ValueError, match="mode='exact'"):
    prep_layout("int8_gemv", 2, mode="fast")
  prep = sharq_prep(_x(9), layout=PathLayout.INT8, interpret=True)
  with pytest.raises(ValueError, match="M = 9"):
    int8_gemv(prep.paths, prep.block_scales, weight, act_scale=prep.scale, config=_CFG,
              interpret=True)
  prep = sharq_prep(x, layout=PathLayout.INT8, interpret=True)
  with pytest.raises(ValueError, match="must be int8"):
    int8_gemv(tuple(p.astype(jnp.uint8) for p in prep.paths), prep.block_scales,
              weight, act_scale=prep.scale, config=_CFG, interpret=True)
  with pytest.raises(ValueError, match="one scale per 16 columns"):
    int8_gemv(prep.paths, tuple(s[:, ::2] for s in prep.block_scales), weight,
              act_scale=prep.scale, config=_CFG, interpret=True)
  # other kernels take INT8 activations through their float16 paths
  small = sharq_prep(x, layout=PathLayout.INT8, interpret=True)
  assert data.rel(sharq_gemm(small, weight, impl="packed", interpret=True),
                  sharq_gemm_reference(small, weight)) < 1e-6
