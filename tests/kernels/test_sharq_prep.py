"""Fused SharQ preparation kernel (interpret mode) against the NumPy contract and core."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sharq_jax.kernels.sharq_prep import (PathLayout, PathMode, PrepConfig,
                                          default_config, finite_amax, scale_from_amax,
                                          sharq_prep, sharq_prep_reference, to_mma_layout)
from sharq_jax.kernels.sharq_prep import specs
from sharq_jax.kernels.sharq_prep.reference import sharq_prep_numpy
from tests.kernels.xla_ops import ops_outside_kernels
from tests.reference import numpy_ref


def _heavy(m, k, dtype, seed):
  return specs.heavy_activations_np(m, k, seed, dtype)


def _neq(a, b):
  a = np.asarray(a, np.float32)
  b = np.asarray(b, np.float32)
  return int(np.sum(~((a == b) | (np.isnan(a) & np.isnan(b)))))


CASES = [  # (m, k, dtype, rmsnorm, mode, config)
    (1, 64, jnp.bfloat16, False, PathMode.EXACT, None),
    (5, 256, jnp.bfloat16, True, PathMode.FAST, PrepConfig(8, 128, 2)),
    (37, 96, jnp.float32, True, PathMode.EXACT, None),
    (19, 128, jnp.float16, False, PathMode.EXACT, PrepConfig(16, 64, 4)),
    (33, 512, jnp.bfloat16, False, PathMode.FAST, PrepConfig(32, 256, 4)),
    # amax in the kernel (one row block), NaN/Inf included
    (7, 256, jnp.bfloat16, False, PathMode.EXACT, PrepConfig(8, 64, 2, in_kernel_amax=True)),
    (16, 128, jnp.float32, False, PathMode.FAST, PrepConfig(16, 32, 4, in_kernel_amax=True)),
]


def test_in_kernel_amax_is_used_only_where_it_applies():
  x = _heavy(8, 128, jnp.bfloat16, seed=3)
  cfg = PrepConfig(8, 64, 2, in_kernel_amax=True)
  def xla_ops(c):
    return ops_outside_kernels(lambda v: sharq_prep(v, config=c, interpret=True), x)

  assert "pallas_call" in xla_ops(cfg) and "reduce_max" not in xla_ops(cfg)
  assert "reduce_max" in xla_ops(PrepConfig(8, 64, 2))  # the XLA stats pass
  # More rows than one block, a given scale, or RMSNorm: the XLA stats pass runs instead
  # and the result is the same.
  two_blocks = sharq_prep(_heavy(9, 128, jnp.bfloat16, seed=3), config=cfg, interpret=True)
  want, s = sharq_prep_numpy(_heavy(9, 128, jnp.bfloat16, seed=3))
  assert float(two_blocks.scale) == float(s) and _neq(two_blocks.paths[0], want[0]) == 0
  given = sharq_prep(x, config=cfg, scale=jnp.float32(0.5), interpret=True)
  assert float(given.scale) == 0.5
  # All-zero input: s = 1, as scale_from_amax says.
  zero = sharq_prep(jnp.zeros((3, 128), jnp.bfloat16), config=cfg, interpret=True)
  assert float(zero.scale) == 1.0 and not np.asarray(zero.paths[0]).any()


@pytest.mark.parametrize("m,k,dtype,rms,mode,cfg", CASES)
def test_prep_equals_contract_bit_for_bit(m, k, dtype, rms, mode, cfg):
  x = _heavy(m, k, dtype, seed=m * 1000 + k)
  if m >= 6:  # bad input: NaN and Inf poison their blocks only; a zero row stays zero
    x = x.at[1, 3].set(jnp.nan).at[2, k - 1].set(jnp.inf).at[5].set(0)
  gamma = (jnp.asarray(np.random.default_rng(k).uniform(0.5, 1.5, k), dtype)
           if rms else None)
  out = sharq_prep(x, gamma=gamma, mode=mode, config=cfg, interpret=True)
  want, s = sharq_prep_numpy(x, gamma=gamma, rstd=out.rstd, mode=mode)
  assert float(out.scale) == float(s)
  assert len(out.paths) == mode.num_paths
  for got, ref in zip(out.paths, want):
    assert got.dtype == jnp.float16 and got.shape == (m, k)
    assert _neq(got, ref) == 0
  if m >= 6:
    p0 = np.asarray(out.paths[0], np.float32)
    assert np.all(p0[5] == 0)
    if rms:  # NaN in a row makes its RMSNorm statistic NaN: the whole row is NaN
      assert np.isnan(p0[1]).all()
    else:  # only the backbone block holding the NaN
      assert np.isnan(p0[1, :32]).all() and not np.isnan(p0[1, 32:]).any()


@pytest.mark.parametrize("mode,cfg", [(PathMode.EXACT, PrepConfig(8, 64, 2)),
                                      (PathMode.FAST, PrepConfig(8, 128, 2,
                                                                 in_kernel_amax=True))])
def test_gemv_layout_is_the_contract_permuted(mode, cfg):
  """layout=GEMV: column 32b + 16p + j holds column 32b + 2j + p, bit for bit."""
  m, k = 5, 256
  x = _heavy(m, k, jnp.bfloat16, seed=21).at[1, 7].set(jnp.nan)
  out = sharq_prep(x, mode=mode, config=cfg, layout=PathLayout.GEMV, interpret=True)
  want, s = sharq_prep_numpy(x, mode=mode)
  b, p, j = np.meshgrid(np.arange(k // 32), np.arange(2), np.arange(16), indexing="ij")
  source = (32 * b + 2 * j + p).reshape(-1)  # in the order (b, p, j) of the output
  assert out.layout is PathLayout.GEMV and float(out.scale) == float(s)
  for got, ref in zip(out.paths, want):
    assert got.dtype == jnp.float16 and got.shape == (m, k)
    assert _neq(got, np.asarray(ref, np.float32)[:, source]) == 0
    assert _neq(to_mma_layout(got), ref) == 0
  back = out.in_mma_layout()
  assert back.layout is PathLayout.MMA and _neq(back.paths[0], want[0]) == 0


def test_prep_matches_independent_numpy_reference():
  x = _heavy(24, 256, jnp.bfloat16, seed=7)
  out = sharq_prep(x, interpret=True)
  r = numpy_ref.act_sharq_nvfp4(np.asarray(x, np.float32))
  assert float(out.scale) == float(r.s)
  for got, ref in zip(out.paths, r.paths):
    assert _neq(got, np.asarray(ref, np.float32)) == 0


def test_tied_pairs_keep_the_lower_index_as_the_contract_says():
  """Values from a small set make equal pair maxima common; the kept pairs (and so
  both paths) must still be the contract's."""
  rng = np.random.default_rng(12)
  vals = np.array([0.0, 1.0, -1.0, 2.0, -2.0, 3.0, -0.5], np.float32)
  x = jnp.asarray(rng.choice(vals, size=(16, 256)), jnp.bfloat16)
  want, _ = sharq_prep_numpy(x)
  out = sharq_prep(x, config=PrepConfig(16, 128, 4), interpret=True)
  for got, ref in zip(out.paths, want):
    assert _neq(got, ref) == 0


def test_prep_matches_core_decomposition_on_finite_data():
  x = _heavy(16, 512, jnp.bfloat16, seed=11)
  out = sharq_prep(x, interpret=True)
  ref = jax.jit(lambda v: sharq_prep_reference(v))(x)
  for got, want in zip(out.paths, ref.paths):
    assert _neq(got, want) == 0


def test_fast_mode_is_one_rounding_of_the_sum():
  x = _heavy(8, 128, jnp.bfloat16, seed=3)
  exact = sharq_prep(x, mode="exact", interpret=True)
  fast = sharq_prep(x, mode="fast", interpret=True)
  total = (np.asarray(exact.paths[0], np.float32) + np.asarray(exact.paths[1], np.float32))
  np.testing.assert_array_equal(np.asarray(fast.paths[0]), total.astype(np.float16))


def test_leading_dims_flatten_and_errors():
  x = _heavy(6, 64, jnp.bfloat16, seed=5).reshape(2, 3, 64)
  assert sharq_prep(x, interpret=True).paths[0].shape == (6, 64)
  with pytest.raises(ValueError, match="multiple of 32"):
    sharq_prep(jnp.ones((2, 48), jnp.bfloat16), interpret=True)
  with pytest.raises(ValueError, match="power of two"):
    PrepConfig(block_m=12)
  assert default_config(1, 14336).block_k == 128 and default_config(1, 96).block_k == 32
  # Decode tiles hold the M rows (rounded up to a power of two); the amax moves into the
  # kernel only for small row blocks (measured faster there, slower beyond).
  tiles = {(m, k): (default_config(m, k).block_m, default_config(m, k).in_kernel_amax)
           for m, k in ((1, 4096), (2, 4096), (3, 4096), (1, 14336), (2, 14336), (8, 1024),
                        (9, 64), (1, 8960), (2, 5632))}
  assert tiles == {(1, 4096): (1, True), (2, 4096): (2, True), (3, 4096): (4, False),
                   (1, 14336): (1, True), (2, 14336): (2, False), (8, 1024): (8, True),
                   (9, 64): (16, False),
                   # beyond 8192 elements only one row whose steps are unrolled: K = 8960
                   # takes 35 steps of 256 columns
                   (1, 8960): (1, False), (2, 5632): (2, False)}


@pytest.mark.parametrize("mode", list(PathMode))
def test_shard_with_the_whole_tensors_scale_equals_that_slice_of_the_whole(mode):
  # Row-parallel layers prepare a K-slice of X on each device with the tensor scale of
  # the whole X (pmax of the shards' amax): the slice must come out exactly as that
  # slice of the single-device preparation.
  x = _heavy(24, 256, jnp.bfloat16, 11)
  whole = sharq_prep(x, mode=mode, interpret=True)
  halves = [x[:, :128], x[:, 128:]]
  amaxes = [float(finite_amax(h)) for h in halves]
  s = scale_from_amax(jnp.float32(max(amaxes)))
  assert float(s) == float(whole.scale)
  for i, h in enumerate(halves):
    part = sharq_prep(h, mode=mode, scale=s, interpret=True)
    for got, want in zip(part.paths, whole.paths):
      np.testing.assert_array_equal(got, want[:, 128 * i:128 * (i + 1)])
  smaller = halves[int(np.argmin(amaxes))]
  own = sharq_prep(smaller, mode=mode, interpret=True)
  assert float(own.scale) != float(s)  # that slice alone would have used another scale
