"""The fragment GEMV: its inline PTX on a warp interpreter written from the PTX ISA's
fragment layouts (tests/kernels/ptx_warp.py), and the whole kernel in interpret mode
(float32 products in place of the PTX) against the float32 XLA reference and the
core library. Its layout assumption (lane 4g + t holds bytes 8t.. of row g) is what the
H200 checks add (benchmarks/probe_mma_gemv.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sharq_jax import linear, methods
from sharq_jax.kernels.sharq_matmul import (FragmentGemvConfig, GemvConfig,
                                            default_fragment_gemv_config, fragment_gemv_gpu,
                                            pack_weight, pack_weight_from_float, prep_layout,
                                            sharq_gemm, sharq_gemm_reference, sharq_matmul)
from sharq_jax.kernels.sharq_prep import PathLayout, PathMode, sharq_prep
from tests.kernels import data
from tests.kernels.ptx_warp import Warp, bits_f32, f16_pair


def _pairs(v):
  """8 float16 values -> 4 words of pairs (elements 2i, 2i+1)."""
  return [f16_pair(v[2 * i], v[2 * i + 1]) for i in range(4)]


@pytest.mark.parametrize("steps,columns", [(1, 1), (3, 2)])
def test_ptx_every_quad_gets_its_rows_dot_products(steps, columns):
  """Lane 4g + t holds, per step, 16 weights of row g (group 0) and of row g + 8 (group
  1) at K chunk t, 8 low-nibble (even-K) and 8 high-nibble (odd-K) values, and every
  lane the same column's activations of its chunk. After the steps (each column's MMAs
  into the one accumulator, as a token's two paths run) the extract asm must leave each
  row's dot product in element 0 of lane t = 0 of its quad and zeros elsewhere."""
  rng = np.random.default_rng(10 * steps + columns)
  f16 = lambda *s: rng.standard_normal(s).astype(np.float16)  # noqa: E731
  w = f16(steps, 2, 2, 8, 4, 8)  # (step, group, plane lo/hi, row g, chunk t, 8)
  x = f16(steps, columns, 2, 4, 8)  # (step, column, parity even/odd, chunk t, 8)
  acc = [[0] * 8 for _ in range(32)]
  mma = Warp(n_outputs=8)
  for s in range(steps):
    for c in range(columns):
      inputs = []
      for lane in range(32):
        g, t = divmod(lane, 4)
        ops = []
        for grp, plane in ((0, 0), (1, 0), (0, 1), (1, 1)):  # lo0, lo1, hi0, hi1
          ops += _pairs(w[s, grp, plane, g, t])
        for parity in (0, 1):
          ops += _pairs(x[s, c, parity, t])
        inputs.append(ops + acc[lane])
      acc = mma.run(fragment_gemv_gpu._mma_asm(), inputs)
  want = np.einsum("sgprtk,scptk->gr", w.astype(np.float64), x.astype(np.float64))
  extract = Warp(n_outputs=8)
  for grp in (0, 1):
    out = extract.run(fragment_gemv_gpu._extract_asm(grp), acc)
    for lane, o in enumerate(out):
      g, t = divmod(lane, 4)
      assert o[1:] == [0] * 7
      if t:
        assert o[0] == 0
      else:
        np.testing.assert_allclose(bits_f32(o[0]), want[grp, g], rtol=1e-5, atol=1e-5)


def test_ptx_nan_weight_reaches_only_its_row():
  """A NaN weight of row 3 (group 0) meets only activations in the MMAs (B holds no
  zeros of other rows), so with IEEE products (NaN·x = NaN, as the warp interpreter
  computes) only row 3's sum is NaN and every other row is its finite dot product."""
  rng = np.random.default_rng(7)
  w = rng.standard_normal((2, 2, 8, 4, 8)).astype(np.float16)  # (group, plane, g, t, 8)
  w[0, 0, 3, 1, 2] = np.nan
  x = rng.standard_normal((2, 4, 8)).astype(np.float16)  # (parity, t, 8)
  inputs = []
  for lane in range(32):
    g, t = divmod(lane, 4)
    ops = []
    for grp, plane in ((0, 0), (1, 0), (0, 1), (1, 1)):
      ops += _pairs(w[grp, plane, g, t])
    for parity in (0, 1):
      ops += _pairs(x[parity, t])
    inputs.append(ops + [0] * 8)
  acc = Warp(n_outputs=8).run(fragment_gemv_gpu._mma_asm(), inputs)
  want = np.einsum("gprtk,ptk->gr", w.astype(np.float64), x.astype(np.float64))
  for grp in (0, 1):
    out = Warp(n_outputs=8).run(fragment_gemv_gpu._extract_asm(grp), acc)
    got = np.array([bits_f32(out[4 * g][0]) for g in range(8)])
    assert np.array_equal(np.isnan(got), np.isnan(want[grp]))
    assert np.isnan(got).sum() == (grp == 0)
    ok = ~np.isnan(want[grp])
    np.testing.assert_allclose(got[ok], want[grp][ok], rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def weight():
  w = data.heavy((64, 256), seed=1, scale=0.05)
  qw = methods.quantize_weight(w, "sharq-nvfp4")
  return qw, pack_weight(qw)


# Queue depths 0-3 (with and without the activations, bytes and words), 1-4 warps, M
# from 1 to the maximum 8.
CONFIGS = [(FragmentGemvConfig(split_k=2), 1),
           (FragmentGemvConfig(split_k=1, prefetch=0, queue_words=False), 3),
           (FragmentGemvConfig(split_k=1, num_warps=1, prefetch=3, prefetch_activations=2),
            2),
           (FragmentGemvConfig(split_k=4, num_warps=2, prefetch=2, prefetch_activations=True),
            8)]


@pytest.mark.parametrize("cfg,m", CONFIGS,
                         ids=lambda v: v.tag() if isinstance(v, FragmentGemvConfig)
                         else f"m{v}")
def test_matches_reference(weight, cfg, m):
  """Both path modes, with bias, against the float32 XLA reference."""
  _, pw = weight
  x = data.heavy((m, 256), seed=400 + m, dtype=jnp.bfloat16)
  bias = jnp.linspace(-2, 2, 64)
  for mode in PathMode:
    prep = sharq_prep(x, mode=mode, layout=PathLayout.PLANES_64, interpret=True)
    y = sharq_gemm(prep, pw, impl="fragment_gemv", config=cfg, bias=bias, interpret=True)
    assert y.shape == (m, 64) and y.dtype == jnp.float32
    assert data.rel(y, sharq_gemm_reference(prep, pw, bias=bias)) < 1e-6


def test_other_layouts_and_the_core_library(weight):
  """Paths in another layout are brought to column order and permuted by XLA (the same
  Y); end to end the kernel matches the core library's XLA sharq_dot."""
  qw, pw = weight
  cfg = FragmentGemvConfig(split_k=2)
  x = data.heavy((2, 256), seed=402, dtype=jnp.bfloat16)
  own = sharq_gemm(sharq_prep(x, layout=PathLayout.PLANES_64, interpret=True), pw,
                   impl="fragment_gemv", config=cfg, interpret=True)
  for layout in (PathLayout.GEMV, PathLayout.MMA):
    got = sharq_gemm(sharq_prep(x, layout=layout, interpret=True), pw,
                     impl="fragment_gemv", config=cfg, interpret=True)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(own))
  assert data.rel(own, linear.sharq_dot_reference(x.astype(jnp.float32), qw)) < 1e-6
  # The whole linear with its default tile (prepared in PLANES_64 by prep_layout) ...
  y = sharq_matmul(x, pw, impl="fragment_gemv", out_dtype=jnp.float32, interpret=True)
  assert data.rel(y, linear.sharq_dot_reference(x.astype(jnp.float32), qw)) < 1e-6
  # ... and PLANES_64 paths given to another GEMV are converted, not misread.
  planes64 = sharq_prep(x, layout=PathLayout.PLANES_64, interpret=True)
  np.testing.assert_array_equal(
      np.asarray(sharq_gemm(planes64, pw, impl="mma_gemv", interpret=True)),
      np.asarray(sharq_gemm(sharq_prep(x, layout=PathLayout.GEMV, interpret=True), pw,
                            impl="mma_gemv", interpret=True)))


def test_nan_inf_weight_blocks_poison_only_their_rows():
  """Rows 1 (NaN) and 6 (Inf) have a bad 32-block (scale code 0x7F). In the fragment
  layout a row's weights meet only activations in the MMA (no zeros of other rows), so
  exactly those rows are NaN, as in the reference."""
  w = np.array(data.heavy((64, 256), seed=11, scale=0.05))
  w[1, 40], w[6, 200] = np.nan, np.inf
  pw = pack_weight_from_float(jnp.asarray(w))
  x = data.heavy((2, 256), seed=12, dtype=jnp.bfloat16)
  prep = sharq_prep(x, layout=PathLayout.PLANES_64, interpret=True)
  for cfg in (FragmentGemvConfig(split_k=2), FragmentGemvConfig(split_k=1, prefetch=2,
                                                                prefetch_activations=1)):
    y = sharq_gemm(prep, pw, impl="fragment_gemv", config=cfg, interpret=True)
    data.assert_nan_columns_and_close(y, sharq_gemm_reference(prep, pw), {1, 6}, cfg)


def test_config_rules_and_defaults(weight):
  """Invalid tiles raise; a config of another kernel raises; the default tiles."""
  _, pw = weight
  with pytest.raises(ValueError, match="num_warps"):
    FragmentGemvConfig(num_warps=3)
  with pytest.raises(ValueError, match="M <= 8"):
    FragmentGemvConfig().check(9, 64, 256)
  with pytest.raises(ValueError, match="block_n"):
    FragmentGemvConfig().check(1, 32, 256)
  with pytest.raises(ValueError, match="split_k"):
    FragmentGemvConfig(split_k=8).check(1, 64, 256)
  with pytest.raises(TypeError, match="GemvConfig"):
    sharq_gemm(sharq_prep(data.heavy((1, 256), seed=5), interpret=True), pw,
               impl="fragment_gemv", config=GemvConfig(block_n=16, block_k=64),
               interpret=True)
  assert FragmentGemvConfig().block_n == 64 and FragmentGemvConfig(num_warps=1).block_n == 16
  assert FragmentGemvConfig(split_k=2, prefetch=4, prefetch_activations=True).tag() == (
      "n64s2p4aw")
  # M = 1: split until >= 448 programs, 4 steps ahead, activations too at split <= 4.
  assert default_fragment_gemv_config(1, 14336, 4096) == FragmentGemvConfig(
      split_k=2, prefetch=4, prefetch_activations=4)
  assert default_fragment_gemv_config(1, 4096, 14336) == FragmentGemvConfig(
      split_k=8, prefetch=4)
  assert default_fragment_gemv_config(2, 4096, 14336) == FragmentGemvConfig(
      split_k=8, prefetch=4)
  assert default_fragment_gemv_config(3, 64, 256) == FragmentGemvConfig(split_k=4, prefetch=4)
  assert prep_layout("fragment_gemv", 1) is PathLayout.PLANES_64


def test_planes_64_layout_is_the_contract_permuted():
  """layout=PLANES_64: column 64b + 32p + j holds column 64b + 2j + p, bit for bit."""
  m, k = 3, 256
  x = data.heavy((m, k), seed=21, dtype=jnp.bfloat16)
  out = sharq_prep(x, layout=PathLayout.PLANES_64, interpret=True)
  want = sharq_prep(x, interpret=True)
  b, p, j = np.meshgrid(np.arange(k // 64), np.arange(2), np.arange(32), indexing="ij")
  source = (64 * b + 2 * j + p).reshape(-1)
  assert out.layout is PathLayout.PLANES_64
  for got, ref in zip(out.paths, want.paths):
    np.testing.assert_array_equal(np.asarray(got, np.float32),
                                  np.asarray(ref, np.float32)[:, source])
  back = out.in_mma_layout()
  assert back.layout is PathLayout.MMA
  for got, ref in zip(back.paths, want.paths):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(ref))
  with pytest.raises(ValueError, match="planes64"):
    sharq_prep(data.heavy((1, 96), seed=3), layout=PathLayout.PLANES_64, interpret=True)


def test_lowers_for_cuda():
  """The kernel with its inline PTX lowers to Triton IR (ptxas runs on a GPU only)."""
  pw = pack_weight_from_float(jnp.linspace(-1, 1, 64 * 512).reshape(64, 512) * 0.1)
  x = jnp.ones((2, 512), jnp.bfloat16)
  cfg = FragmentGemvConfig(split_k=2, prefetch=3, prefetch_activations=1)

  def fn(x, w):
    prep = sharq_prep(x, layout=PathLayout.PLANES_64)
    return sharq_gemm(prep, w, impl="fragment_gemv", config=cfg)
  try:
    text = jax.jit(fn).trace(x, pw).lower(lowering_platforms=("cuda",)).as_text()
  except (NotImplementedError, RuntimeError) as ex:
    if "pallas" in str(ex).lower() or "triton" in str(ex).lower():
      raise
    pytest.skip(f"cross-platform lowering for cuda unavailable: {ex}")
  assert "sharq_fragment_gemv" in text
