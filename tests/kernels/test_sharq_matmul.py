"""SharQ GEMM kernels (interpret mode) against float32 XLA references and the core."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from sharq_jax import linear, methods
from sharq_jax.kernels.sharq_matmul import (DenseGemmConfig, GemmImpl, GemvConfig,
                                            MmaGemvConfig, PackedGemmConfig, WeightLayout,
                                            default_gemv_config, default_mma_gemv_config,
                                            default_packed_config, resolve_impl, expand_weight,
                                            expand_weight_pallas, pack_weight,
                                            pack_weight_from_float, prep_layout, sharq_gemm,
                                            sharq_gemm_reference, sharq_matmul)
from sharq_jax.kernels.sharq_matmul import gemv, specs
from sharq_jax.kernels.sharq_matmul.mma_gemv_gpu import column_sets
from sharq_jax.kernels.sharq_prep import PathLayout, PathMode, Prepared, sharq_prep
from tests.kernels import data
from tests.kernels.xla_ops import ops_outside_kernels


@pytest.fixture(scope="module")
def weight():
  w = data.heavy((64, 256), seed=1, scale=0.05)
  qw = methods.quantize_weight(w, "sharq-nvfp4")
  return w, qw, pack_weight(qw)


def test_pack_and_expand_are_exact(weight):
  _, qw, pw = weight
  assert pw.codes.shape == (64, 128) and pw.scales.shape == (64, 8)
  np.testing.assert_array_equal(np.asarray(expand_weight(pw, jnp.float32)),
                                np.asarray(qw.unscaled()))
  w16 = expand_weight_pallas(pw, block_n=32, block_k=128, interpret=True)
  np.testing.assert_array_equal(np.asarray(w16, np.float32) * 128.0,
                                np.asarray(qw.unscaled()))
  assert float(pw.scale) == float(qw.scale())
  assert pack_weight(pw) is pw
  with pytest.raises(ValueError, match="NVFP4 block-32"):
    pack_weight(methods.quantize_weight(weight[0], "nvfp4"))
  pf = pack_weight_from_float(weight[0])
  np.testing.assert_array_equal(np.asarray(pf.codes), np.asarray(pw.codes))


PACKED = [
    PackedGemmConfig(block_m=16, block_n=32, block_k=64, split_k=1),
    PackedGemmConfig(block_m=16, block_n=32, block_k=128, split_k=2, interleave="strided"),
    PackedGemmConfig(block_m=16, block_n=64, block_k=32, split_k=4, orient="wx"),
    PackedGemmConfig(block_m=32, block_n=16, block_k=64, split_k=1, orient="wx",
                     interleave="strided", asm_decode=False),
]


@pytest.mark.parametrize("cfg", PACKED, ids=lambda c: f"{c.interleave.value}-{c.orient.value}"
                         f"-s{c.split_k}-bk{c.block_k}")
@pytest.mark.parametrize("m", specs.TEST_MS)
def test_packed_gemm_matches_reference(weight, cfg, m):
  _, _, pw = weight
  x = data.heavy((m, 256), seed=m, dtype=jnp.bfloat16)
  for mode in PathMode:
    prep = sharq_prep(x, mode=mode, interpret=True)
    ref = sharq_gemm_reference(prep, pw)
    y = sharq_gemm(prep, pw, impl="packed", config=cfg, interpret=True)
    assert y.shape == (m, 64) and y.dtype == jnp.float32
    assert data.rel(y, ref) < 1e-6
  if m == specs.TEST_MS[0] and cfg is PACKED[0]:  # GEMV-layout paths: MMA layout first
    planes = sharq_prep(x, mode=mode, layout=PathLayout.GEMV, interpret=True)
    np.testing.assert_array_equal(np.asarray(sharq_gemm_reference(planes, pw)),
                                  np.asarray(ref))
    np.testing.assert_array_equal(np.asarray(sharq_gemm(
        planes, pw, impl="packed", config=cfg, interpret=True)), np.asarray(y))


GEMV = [(GemvConfig(block_n=16, block_k=64, prefetch=True, row_groups=2), 1),
        (GemvConfig(block_n=16, block_k=64, row_groups=2), 8),
        (GemvConfig(block_n=32, block_k=32, split_k=4, prefetch=True, row_groups=4), 3),
        (GemvConfig(block_n=16, block_k=32, prefetch=3, prefetch_activations=True,
                    row_groups=2), 2)]
# (tile, M): fused and split-K, with and without the weight prefetch (3 steps deep with
# the activations: 8 steps, so two ring iterations and a peeled tail of 2) and row groups


@pytest.mark.parametrize("cfg,m", GEMV,
                         ids=lambda v: f"bn{v.block_n}-bk{v.block_k}-s{v.split_k}"
                         f"-pf{v.prefetch}a{v.prefetch_activations}"
                         f"-g{v.row_groups}"
                         if isinstance(v, GemvConfig) else f"m{v}")
def test_gemv_matches_reference(weight, cfg, m):
  _, _, pw = weight
  x = data.heavy((m, 256), seed=100 + m, dtype=jnp.bfloat16)
  bias = jnp.linspace(-2, 2, 64)
  for mode in PathMode:
    prep = sharq_prep(x, mode=mode, interpret=True)
    y = sharq_gemm(prep, pw, impl="gemv", config=cfg, bias=bias, interpret=True)
    assert y.shape == (m, 64) and y.dtype == jnp.float32
    assert data.rel(y, sharq_gemm_reference(prep, pw, bias=bias)) < 1e-6
    # Paths the prep wrote in the GEMV's layout are what the kernel reads: same Y.
    planes = sharq_prep(x, mode=mode, layout=PathLayout.GEMV, interpret=True)
    yp = sharq_gemm(planes, pw, impl="gemv", config=cfg, bias=bias, interpret=True)
    assert data.rel(yp, sharq_gemm_reference(planes, pw, bias=bias)) < 1e-6
    np.testing.assert_array_equal(np.asarray(yp), np.asarray(y))
  # Each token's row is its own: the last token alone (same paths, same scale) gives
  # the last row bit for bit.
  prep = sharq_prep(x, interpret=True)
  full = sharq_gemm(prep, pw, impl="gemv", config=cfg, interpret=True)
  last = Prepared(paths=tuple(p[-1:] for p in prep.paths), scale=prep.scale, rstd=None,
                  mode=prep.mode)
  solo = sharq_gemm(last, pw, impl="gemv", config=cfg, interpret=True)
  np.testing.assert_array_equal(np.asarray(solo), np.asarray(full[-1:]))


def test_gemv_end_to_end_through_auto(weight):
  """M = 1 under AUTO runs the GEMV and equals the core library's XLA sharq_dot."""
  _, qw, pw = weight
  x = data.heavy((1, 256), seed=77, dtype=jnp.bfloat16)
  bias = jnp.linspace(-1, 1, 64)
  y = sharq_matmul(x, pw, bias=bias, out_dtype=jnp.float32, interpret=True)
  assert data.rel(y, linear.sharq_dot_reference(x.astype(jnp.float32), qw, bias=bias)) < 1e-6
  yb = sharq_matmul(x, pw, bias=bias, interpret=True)  # x's dtype: bf16 out
  assert yb.dtype == jnp.bfloat16
  assert data.rel(yb, y) < 4e-3  # one bf16 rounding


def test_the_prep_writes_the_layout_the_gemm_reads(weight):
  """sharq_matmul prepares in the GEMV's layout where the GEMV runs (no XLA transpose
  between the kernels) and in the MMA layout elsewhere."""
  _, _, pw = weight
  assert prep_layout("auto", 1) is PathLayout.GEMV
  assert prep_layout("auto", 4) is PathLayout.INT8  # exact mode: the int8 GEMV
  assert prep_layout("auto", 4, mode="fast") is PathLayout.GEMV
  assert prep_layout("auto", 5) is PathLayout.MMA
  assert prep_layout("auto", 9) is PathLayout.MMA
  assert prep_layout("auto", 1, PackedGemmConfig(block_m=16, block_n=32)) is PathLayout.MMA
  def ops(m, impl):
    x = data.heavy((m, 256), seed=3, dtype=jnp.bfloat16)
    return ops_outside_kernels(lambda v: sharq_matmul(v, pw, impl=impl, interpret=True), x)
  assert "pallas_call" in ops(1, "auto") and "transpose" not in ops(1, "auto")
  assert "transpose" not in ops(3, "packed")
  # Paths in the other layout than the kernel's are converted by XLA first.
  prep = sharq_prep(data.heavy((1, 256), seed=3, dtype=jnp.bfloat16), interpret=True)
  assert "transpose" in ops_outside_kernels(
      lambda p: sharq_gemm(p, pw, impl="gemv", interpret=True), prep)


def test_config_type_picks_or_guards_the_kernel(weight):
  _, _, pw = weight
  prep = sharq_prep(data.heavy((1, 256), seed=6, dtype=jnp.bfloat16), interpret=True)
  ref = sharq_gemm_reference(prep, pw)
  # AUTO with an explicit config runs the kernel that config describes.
  packed = PackedGemmConfig(block_m=16, block_n=32, block_k=64)
  assert data.rel(sharq_gemm(prep, pw, config=packed, interpret=True), ref) < 1e-6
  with pytest.raises(TypeError, match="GemvConfig"):
    sharq_gemm(prep, pw, impl="packed", config=GemvConfig(block_n=16, block_k=64),
               interpret=True)
  with pytest.raises(TypeError, match="must be a"):
    sharq_gemm(prep, pw, config=object(), interpret=True)


def test_gemv_limits_and_auto_pick(weight):
  _, _, pw = weight
  prep = sharq_prep(data.heavy((9, 256), seed=5, dtype=jnp.bfloat16), interpret=True)
  with pytest.raises(ValueError, match="M <= 8"):
    sharq_gemm(prep, pw, impl="gemv", interpret=True)
  with pytest.raises(ValueError, match="block_n"):
    sharq_gemm(sharq_prep(data.heavy((2, 256), seed=5), interpret=True), pw, impl="gemv",
               config=GemvConfig(block_n=128), interpret=True)
  # measured (sessions 6-7): the MMA GEMV beats the GEMV at M <= 4 (with its prefetch
  # queue at M = 1)
  # queue at M = 1); session 12: the int8 GEMV beats both at M = 4 in exact mode
  for m in (1, 2):
    assert resolve_impl("auto", m) is GemmImpl.MMA_GEMV
  assert resolve_impl("auto", 5) is GemmImpl.PACKED
  for m in (3, 4):
    assert resolve_impl("auto", m) is GemmImpl.INT8_GEMV
    assert resolve_impl("auto", m, mode="exact") is GemmImpl.INT8_GEMV
  for m in (3, 4):  # fast mode, or activations already prepared as float16 paths
    assert resolve_impl("auto", m, mode="fast") is GemmImpl.MMA_GEMV
    assert resolve_impl("auto", m, mode=None) is GemmImpl.MMA_GEMV
  assert resolve_impl("auto", 5, mode="fast") is GemmImpl.PACKED
  # where its 64-row, 64-K tiles do not fit the weight, AUTO runs the GEMV at M = 1
  # and PACKED from M = 2
  assert resolve_impl("auto", 3, 4096, 4096) is GemmImpl.INT8_GEMV
  assert resolve_impl("auto", 3, 4096, 4096, mode="fast") is GemmImpl.MMA_GEMV
  assert resolve_impl("auto", 1, 48, 128) is GemmImpl.GEMV
  assert resolve_impl("auto", 2, 48, 128) is GemmImpl.PACKED
  assert resolve_impl("auto", 3, 48, 128) is GemmImpl.PACKED
  assert prep_layout("auto", 3, None, 48, 128) is PathLayout.MMA
  assert prep_layout("auto", 3) is PathLayout.INT8
  assert prep_layout("auto", 3, mode="fast") is PathLayout.GEMV
  # M = 2 at both big shapes (run 23: 29.4 against the GEMV's 39.0 us at K = 14336)
  assert resolve_impl("auto", 2, 4096, 14336) is GemmImpl.MMA_GEMV
  assert resolve_impl("auto", 2, 14336, 4096) is GemmImpl.MMA_GEMV
  assert resolve_impl("auto", 9) is GemmImpl.PACKED
  assert resolve_impl("auto", 65) is GemmImpl.EXPANDED_XLA
  # The swept picks (N, K): bn 32 in 2 row groups, bk 128, split 16, 4 warps; the
  # weight prefetch where K > N; smaller tiles where the shape needs them.
  for n, k, tile in ((14336, 4096, (32, 128, 16, 4, False, 2)),
                     (4096, 14336, (32, 128, 16, 4, True, 2)),
                     (1024, 4096, (32, 128, 16, 4, True, 2)),
                     (64, 256, (32, 128, 2, 4, True, 2)),
                     (16, 96, (16, 32, 1, 4, True, 2))):
    cfg = default_gemv_config(1, n, k)
    cfg.check(1, n, k)
    assert (cfg.block_n, cfg.block_k, cfg.split_k, cfg.num_warps, cfg.prefetch,
            cfg.row_groups) == tile


@pytest.mark.parametrize("impl", [GemmImpl.EXPANDED_PALLAS, GemmImpl.EXPANDED_XLA])
def test_expanded_gemms_match_reference(weight, impl):
  _, _, pw = weight
  x = data.heavy((37, 256), seed=4, dtype=jnp.bfloat16)
  prep = sharq_prep(x, interpret=True)
  bias = jnp.linspace(-1, 1, 64)
  cfg = DenseGemmConfig(block_m=16, block_n=32, block_k=64) if impl is GemmImpl.EXPANDED_PALLAS else None
  y = sharq_gemm(prep, pw, impl=impl, config=cfg, bias=bias, out_dtype=jnp.bfloat16,
                 interpret=True)
  assert y.dtype == jnp.bfloat16
  assert data.rel(y, sharq_gemm_reference(prep, pw, bias=bias)) < 1e-2  # bf16 output


def test_sharq_matmul_equals_core_sharq_dot(weight):
  _, qw, pw = weight
  x = data.heavy((2, 3, 256), seed=9, dtype=jnp.bfloat16)
  bias = jnp.arange(64, dtype=jnp.float32) / 64
  y = sharq_matmul(x, pw, bias=bias, out_dtype=jnp.float32, interpret=True)
  yr = linear.sharq_dot_reference(x.astype(jnp.float32), qw, bias=bias)
  assert y.shape == (2, 3, 64)
  assert data.rel(y, yr) < 1e-6
  yf = sharq_matmul(x, pw, bias=bias, mode="fast", out_dtype=jnp.float32, interpret=True)
  assert data.rel(yf, yr) < 1e-3  # fast mode: one float16 rounding of Ŝ + R̂


def test_rmsnorm_fused_and_errors(weight):
  _, _, pw = weight
  x = data.heavy((5, 256), seed=2, dtype=jnp.bfloat16)
  g = jnp.asarray(np.random.default_rng(0).uniform(0.5, 1.5, 256), jnp.bfloat16)
  y = sharq_matmul(x, pw, gamma=g, interpret=True)
  xn = sharq_prep(x, gamma=g, interpret=True)
  assert data.rel(y, sharq_gemm_reference(xn, pw)) < 1e-2
  with pytest.raises(ValueError, match="K=128"):
    sharq_matmul(jnp.ones((2, 128), jnp.bfloat16), pw, interpret=True)
  with pytest.raises(ValueError, match="block_n"):
    sharq_gemm(xn, pw, impl="packed", config=PackedGemmConfig(block_n=128), interpret=True)


def test_default_packed_config_covers_the_gpu():
  cfg = default_packed_config(16, 14336, 4096)
  assert cfg.split_k * 14336 // cfg.block_n >= 264
  cfg.check(16, 14336, 4096)
  cfg = default_packed_config(1, 4096, 14336)
  cfg.check(1, 4096, 14336)
  assert dataclasses.replace(cfg, orient="wx").orient.value == "wx"


@pytest.mark.parametrize("cfg,m", [(MmaGemvConfig(split_k=2), 1),
                                   (MmaGemvConfig(split_k=1, prefetch=False), 3),
                                   (MmaGemvConfig(split_k=4), 5),
                                   (MmaGemvConfig(split_k=1, prefetch=4,
                                                  prefetch_activations=True), 2),
                                   (MmaGemvConfig(split_k=1, prefetch=2,
                                                  prefetch_activations=1,
                                                  queue_words=True), 1),
                                   (MmaGemvConfig(split_k=1, prefetch=3,
                                                  prefetch_activations=2,
                                                  queue_words=True), 3)],
                         ids=lambda v: v.tag() if isinstance(v, MmaGemvConfig) else f"m{v}")
def test_mma_gemv_matches_reference(weight, cfg, m):
  """Interpret mode runs the MMA GEMV's tiles, decode, activation planes, column sets
  and split-K with float32 products in place of the PTX MMAs (the PTX itself ran on
  the H200 in the session-6 prototype, not in these tests)."""
  _, qw, pw = weight
  x = data.heavy((m, 256), seed=300 + m, dtype=jnp.bfloat16)
  bias = jnp.linspace(-2, 2, 64)
  for mode in PathMode:
    prep = sharq_prep(x, mode=mode, layout=PathLayout.GEMV, interpret=True)
    y = sharq_gemm(prep, pw, impl="mma_gemv", config=cfg, bias=bias, interpret=True)
    assert y.shape == (m, 64) and y.dtype == jnp.float32
    assert data.rel(y, sharq_gemm_reference(prep, pw, bias=bias)) < 1e-6
  # Paths in the MMA layout are permuted by XLA first: the same Y.
  prep = sharq_prep(x, interpret=True)
  np.testing.assert_array_equal(
      np.asarray(sharq_gemm(prep, pw, impl="mma_gemv", config=cfg, interpret=True)),
      np.asarray(sharq_gemm(sharq_prep(x, layout=PathLayout.GEMV, interpret=True), pw,
                            impl="mma_gemv", config=cfg, interpret=True)))
  # AUTO at M = 2 runs it, end to end against the core library's XLA sharq_dot.
  x2 = x[:2]
  y2 = sharq_matmul(x2, pw, bias=bias, out_dtype=jnp.float32, interpret=True)
  assert data.rel(y2, linear.sharq_dot_reference(x2.astype(jnp.float32), qw, bias=bias)) < 1e-6


def test_tiled_layout_stores_each_64x64_tile_contiguously():
  """WeightLayout.TILES_64 against its definition, element by element: tile (i, j),
  row r, byte c holds codes[64i + r, 32j + c] (scales: scales[64i + r, 2j + c]); the
  round trip, expand_weight and N/K checks."""
  w = data.heavy((128, 192), seed=21, scale=0.05)
  rows = pack_weight_from_float(w)
  tiles = pack_weight_from_float(w, WeightLayout.TILES_64)
  assert (tiles.n, tiles.k, tiles.shape) == (128, 192, (128, 192))
  assert tiles.codes.shape == (2, 3, 64, 32) and tiles.scales.shape == (2, 3, 64, 2)
  codes, scales = np.asarray(rows.codes), np.asarray(rows.scales)
  tc, ts = np.asarray(tiles.codes), np.asarray(tiles.scales)
  for i, j, r in np.ndindex(2, 3, 64):
    np.testing.assert_array_equal(tc[i, j, r], codes[64 * i + r, 32 * j:32 * j + 32])
    np.testing.assert_array_equal(ts[i, j, r], scales[64 * i + r, 2 * j:2 * j + 2])
  back = tiles.to_layout("rows")
  np.testing.assert_array_equal(np.asarray(back.codes), codes)
  np.testing.assert_array_equal(np.asarray(back.scales), scales)
  np.testing.assert_array_equal(np.asarray(expand_weight(tiles, jnp.float32)),
                                np.asarray(expand_weight(rows, jnp.float32)))
  assert pack_weight(tiles) is tiles and rows.to_layout(WeightLayout.ROWS) is rows
  again = pack_weight(rows, WeightLayout.TILES_64)
  np.testing.assert_array_equal(np.asarray(again.codes), tc)
  np.testing.assert_array_equal(np.asarray(pack_weight(again, "rows").codes), codes)
  with pytest.raises(ValueError, match="multiples of 64"):
    pack_weight_from_float(w[:96], WeightLayout.TILES_64)


@pytest.mark.parametrize("cfg,m", [(MmaGemvConfig(split_k=2), 1),
                                   (MmaGemvConfig(split_k=1, prefetch=3,
                                                  prefetch_activations=2,
                                                  queue_words=True), 3)],
                         ids=lambda v: v.tag() if isinstance(v, MmaGemvConfig) else f"m{v}")
def test_mma_gemv_reads_tiled_weights(cfg, m):
  """The MMA GEMV on a TILES_64 weight gives the row layout's outputs bit for bit
  (same products and order; only the addresses differ), with two K splits of
  several steps each; other kernels convert a tiled weight first."""
  w = data.heavy((128, 512), seed=22, scale=0.05)
  rows = pack_weight_from_float(w)
  tiles = rows.to_layout(WeightLayout.TILES_64)
  x = data.heavy((m, 512), seed=23 + m, dtype=jnp.bfloat16)
  prep = sharq_prep(x, layout=PathLayout.GEMV, interpret=True)
  y = sharq_gemm(prep, tiles, impl="mma_gemv", config=cfg, interpret=True)
  np.testing.assert_array_equal(
      np.asarray(y),
      np.asarray(sharq_gemm(prep, rows, impl="mma_gemv", config=cfg, interpret=True)))
  assert data.rel(y, sharq_gemm_reference(prep, tiles)) < 1e-6
  prep_mma = sharq_prep(x, interpret=True)
  np.testing.assert_array_equal(
      np.asarray(sharq_gemm(prep_mma, tiles, impl="packed", interpret=True)),
      np.asarray(sharq_gemm(prep_mma, rows, impl="packed", interpret=True)))
  if m > 1:
    return
  # The kernels that read rows, called directly, convert a tiled weight too.
  gcfg = default_gemv_config(m, 128, 512)
  np.testing.assert_array_equal(
      np.asarray(gemv(prep.paths, tiles, act_scale=prep.scale, config=gcfg, planes=True,
                      interpret=True)),
      np.asarray(gemv(prep.paths, rows, act_scale=prep.scale, config=gcfg, planes=True,
                      interpret=True)))
  np.testing.assert_array_equal(np.asarray(expand_weight_pallas(tiles, interpret=True)),
                                np.asarray(expand_weight_pallas(rows, interpret=True)))
  with pytest.raises(ValueError, match="num_warps=4"):
    sharq_gemm(prep, tiles, impl="mma_gemv", config=MmaGemvConfig(split_k=1, num_warps=8),
               interpret=True)


def test_mma_gemv_nan_inf_weight_blocks_poison_only_their_rows():
  """With isolate_nan_rows, rows 1 (NaN) and 6 (Inf) have a bad 32-block; their quads'
  other rows (0, 2, 3 and 4, 5, 7) must stay finite and equal the reference. The kernel
  zeroes bad blocks in the MMA operands and restores NaN per row from a flag after the
  K loop, so here (as on the GPU) a broken flag gives finite rows 1 and 6. (Without the
  option the kernel relies on the tensor cores' NaN·0 = 0, which interpret mode's per-row
  float32 products cannot show; probe_mma_gemv checks that case on the H200.)"""
  w = np.array(data.heavy((64, 256), seed=11, scale=0.05))
  w[1, 40], w[6, 200] = np.nan, np.inf
  pw = pack_weight_from_float(jnp.asarray(w))
  x = data.heavy((3, 256), seed=12, dtype=jnp.bfloat16)
  for cfg, layout in ((MmaGemvConfig(split_k=2, isolate_nan_rows=True), WeightLayout.ROWS),
                      (MmaGemvConfig(split_k=1, prefetch=2, prefetch_activations=True,
                                     isolate_nan_rows=True, queue_words=True),
                       WeightLayout.ROWS),
                      (MmaGemvConfig(split_k=2, isolate_nan_rows=True),
                       WeightLayout.TILES_64)):
    prep = sharq_prep(x, layout=PathLayout.GEMV, interpret=True)
    y = sharq_gemm(prep, pw.to_layout(layout), impl="mma_gemv", config=cfg, interpret=True)
    data.assert_nan_columns_and_close(y, sharq_gemm_reference(prep, pw), {1, 6}, cfg)


def test_mma_gemv_config_rules(weight):
  _, _, pw = weight
  with pytest.raises(ValueError, match="num_warps"):
    MmaGemvConfig(num_warps=2)  # a warp's lanes would span K: the PTX needs rows only
  with pytest.raises(ValueError, match="M <= 8"):
    MmaGemvConfig().check(9, 64, 256)
  with pytest.raises(ValueError, match="block_n"):
    MmaGemvConfig().check(1, 32, 256)
  with pytest.raises(ValueError, match="split_k"):
    MmaGemvConfig(split_k=8).check(1, 64, 256)
  with pytest.raises(TypeError, match="GemvConfig"):
    sharq_gemm(sharq_prep(data.heavy((2, 256), seed=5), interpret=True), pw, impl="mma_gemv",
               config=GemvConfig(block_n=16, block_k=64), interpret=True)
  # Defaults (N, K): 4 warps. M = 1: K split until >= 448 programs, code words 4 steps
  # ahead, the activations too where the split is <= 4. M = 2: split 8, words 4 ahead and
  # the activations 1 where a program has >= 16 steps, else 2 ahead; M >= 3: split 8,
  # one step of words ahead. Less split where K needs it.
  assert default_mma_gemv_config(1, 14336, 4096) == MmaGemvConfig(
      split_k=2, prefetch=4, prefetch_activations=4, queue_words=True)
  assert default_mma_gemv_config(1, 4096, 14336) == MmaGemvConfig(
      split_k=8, prefetch=4, queue_words=True)
  assert default_mma_gemv_config(1, 1024, 4096) == MmaGemvConfig(
      split_k=32, prefetch=4, queue_words=True)
  assert default_mma_gemv_config(2, 14336, 4096) == MmaGemvConfig(
      split_k=8, prefetch=2, queue_words=True)
  assert default_mma_gemv_config(2, 4096, 14336) == MmaGemvConfig(
      split_k=8, prefetch=4, prefetch_activations=1, queue_words=True)
  assert default_mma_gemv_config(3, 4096, 14336) == MmaGemvConfig(
      split_k=8, prefetch=1, queue_words=True)
  assert default_mma_gemv_config(4, 64, 256) == MmaGemvConfig(split_k=4, queue_words=True)
  # N below one tile: a default is still made (check() then names the problem).
  assert default_mma_gemv_config(1, 32, 256).split_k == 4
  # a tiled weight at M = 1: split 16, activations 1 ahead, pinned loads at both big
  # shapes (runs 56-57), less split where K needs it; rows' rules at M >= 2
  for n, k in ((14336, 4096), (4096, 14336)):
    assert default_mma_gemv_config(1, n, k, WeightLayout.TILES_64) == MmaGemvConfig(
        split_k=16, prefetch=4, prefetch_activations=1, queue_words=True, pin_loads=True)
    assert (default_mma_gemv_config(2, n, k, WeightLayout.TILES_64)
            == default_mma_gemv_config(2, n, k))
  assert default_mma_gemv_config(1, 1024, 512, WeightLayout.TILES_64).split_k == 8
  for bad in (dict(prefetch=-1), dict(prefetch=1.5),
              dict(prefetch=0, prefetch_activations=True),
              dict(prefetch_activations=-2), dict(prefetch_activations=0.5)):
    with pytest.raises(ValueError, match="prefetch"):
      MmaGemvConfig(**bad)
  assert MmaGemvConfig(prefetch=np.int64(2)).prefetch == 2  # stored as an int
  # Activations: True = the codes' depth, False = 0, else their own depth.
  assert MmaGemvConfig(prefetch=3, prefetch_activations=True).prefetch_activations == 3
  assert MmaGemvConfig(prefetch=3, prefetch_activations=False).prefetch_activations == 0
  assert MmaGemvConfig(prefetch=0, prefetch_activations=2).prefetch_activations == 2
  assert MmaGemvConfig(split_k=2, prefetch=4, prefetch_activations=True).tag() == "n64s2p4a"
  assert MmaGemvConfig(prefetch=8, prefetch_activations=2, queue_words=True
                       ).tag() == "n64s4p8a2w"
  # Two activation columns per MMA group; an odd count leaves the last half empty.
  assert column_sets(1, 2) == [((0, 0), (1, 0))]
  assert column_sets(3, 1) == [((0, 0), (0, 1)), ((0, 2), None)]
