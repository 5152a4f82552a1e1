"""Hypothesis property tests of the library (formats, masks, SharQ decomposition).

Data stay in the float32 normal range (XLA CPU flushes subnormals).  Reference helpers
from tests/reference are used only to decode stored scales and to generate data.
"""

import functools

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.reference import numpy_ref as ref

import sharq_jax.formats as formats
import sharq_jax.masks as masks
import sharq_jax.methods as methods
import sharq_jax.decompose as decompose

SETTINGS = settings(max_examples=30, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.data_too_large])

SHAPE = (8, 128)

FORMATS = {
    "nvfp4/16": formats.NVFP4(block_size=16),
    "nvfp4/32": formats.NVFP4(block_size=32),
    "nvfp4/16/row": formats.NVFP4(block_size=16,
                                  scale_granularity=formats.ScaleGranularity.PER_ROW),
    "mxfp4/32": formats.MXFP4(),
    "mxfp4/32/ceil": formats.MXFP4(scale_rounding=formats.ScaleRounding.CEIL),
    "mxfp4/64": formats.MXFP4(block_size=64),
    "hif4": formats.HiF4(),
}


def _clean(x, floor=1e-20):
  x = np.asarray(x, np.float32).copy()
  x[np.abs(x) < floor] = 0.0
  return x


# Adversarial element values: arbitrary normal floats, grid points and ties, zeros.
_GRIDISH = st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5,
                            4.0, 5.0, 6.0, 7.0, 448.0, 2688.0, -0.25, -2.5, -5.0, -6.0])
_ELEM = st.one_of(
    st.floats(-1e6, 1e6, width=32, allow_subnormal=False, allow_nan=False),
    _GRIDISH,
)


def adversarial(shape=SHAPE):
  return hnp.arrays(np.float32, shape, elements=_ELEM).map(_clean)


@st.composite
def heavy(draw, shape=SHAPE, max_binades=30.0):
  seed = draw(st.integers(0, 2 ** 32 - 1))
  binades = draw(st.floats(0.0, max_binades))
  chans = draw(st.integers(0, 4))
  rng = np.random.default_rng(seed)
  return ref.heavy_tailed(rng, shape[0], shape[1], binades=binades, outlier_channels=chans,
                          zero_block=64 if shape[1] % 64 == 0 else shape[1], zero_blocks=1)


def inputs(shape=SHAPE):
  return st.one_of(heavy(shape), adversarial(shape))


@functools.lru_cache(maxsize=None)
def _quant(fmt, given_scale=False):
  if given_scale:
    return jax.jit(lambda x, s: formats.quantize(x, fmt, tensor_scale=s))
  return jax.jit(lambda x: formats.quantize(x, fmt))


@functools.lru_cache(maxsize=None)
def _qdq(fmt, given_scale=False):
  if given_scale:
    return jax.jit(lambda x, s: formats.quantize(x, fmt, tensor_scale=s).dequantize())
  return jax.jit(lambda x: formats.quantize(x, fmt).dequantize())


def _unit_per_element(q, fmt):
  """float64 step unit per element (d_b·s, 2^e_b, or E·2^(e8+e4)) from the stored scales,
  decoded with the reference's own tables."""
  scales = np.asarray(q.scales)
  if isinstance(fmt, formats.HiF4):
    meta = scales.astype(np.uint64)
    E = ref.E6M2_VALUES[(meta & 255).astype(np.int64)]
    e8 = (meta[..., None] >> (8 + np.arange(8, dtype=np.uint64))) & 1
    e4 = (meta[..., None] >> (16 + np.arange(16, dtype=np.uint64))) & 1
    exp = np.repeat(e8, 2, axis=-1) + e4                         # (..., nu, 16)
    unit = E[..., None] * np.exp2(exp.astype(np.float64))
    unit = np.repeat(unit, 4, axis=-1)
    return unit.reshape(scales.shape[:-1] + (-1,))
  b = fmt.block_size
  scale = scales.astype(np.float64)
  if isinstance(fmt, formats.NVFP4):
    scale = scale * np.asarray(q.tensor_scale, np.float64)
  return np.repeat(scale, b, axis=-1)


def _half_step_bound(x, unit, fmt):
  """Nearest-grid-point bound: half the local grid gap, or the saturation excess."""
  ax = np.abs(x.astype(np.float64))
  with np.errstate(divide="ignore", invalid="ignore"):
    m = np.where(unit > 0, ax / unit, 0.0)
  if isinstance(fmt, formats.HiF4):
    top, half = 1.75, np.full_like(m, 0.125)
  else:
    top = 6.0
    half = np.where(m < 2, 0.25, np.where(m < 4, 0.5, 1.0))
  return np.where(m <= top, half, m - top) * unit


# ------------------------------------------------------------------ idempotence

@pytest.mark.parametrize("name", ["mxfp4/32", "mxfp4/32/ceil", "mxfp4/64"])
@SETTINGS
@given(x=inputs())
def test_mxfp4_qdq_idempotent(name, x):
  fmt = FORMATS[name]
  y = np.asarray(_qdq(fmt)(jnp.asarray(x)))
  z = np.asarray(_qdq(fmt)(jnp.asarray(y)))
  assert np.array_equal(y, z)


@pytest.mark.parametrize("name", ["nvfp4/16", "nvfp4/32", "nvfp4/16/row"])
@SETTINGS
@given(x=inputs())
def test_nvfp4_qdq_idempotent_with_fixed_tensor_scale(name, x):
  """With the tensor scale held fixed, re-quantizing NVFP4 output is exact for every
  block whose E4M3 scale is normal (>= 2^-6).  (Subnormal block scales are not a
  projection: e.g. d = 2·2^-9 with max code 4 re-quantizes with d' = 2^-9.)"""
  fmt = FORMATS[name]
  s = np.asarray(formats.global_scale(jnp.asarray(x), fmt.scale_granularity))
  q = _quant(fmt, True)(jnp.asarray(x), jnp.asarray(s))
  y = np.asarray(q.dequantize())
  z = np.asarray(_qdq(fmt, True)(jnp.asarray(y), jnp.asarray(s)))
  d = np.repeat(np.asarray(q.scales).astype(np.float64), fmt.block_size, axis=-1)
  normal = d >= 2.0 ** -6
  assert np.array_equal(y[normal], z[normal])


@SETTINGS
@given(x=inputs())
def test_hif4_qdq_idempotent_where_metadata_is_reproduced(x):
  """HiF4 is not a projection (Vmax' = qdq(Vmax) can pick a smaller E6M2 scale), but
  every unit whose metadata word the second pass reproduces must be reproduced exactly."""
  fmt = FORMATS["hif4"]
  q1 = _quant(fmt)(jnp.asarray(x))
  y = np.asarray(q1.dequantize())
  q2 = _quant(fmt)(jnp.asarray(y))
  z = np.asarray(q2.dequantize())
  same = np.asarray(q1.scales) == np.asarray(q2.scales)          # (rows, units)
  same_el = np.repeat(same, 64, axis=-1)
  assert np.array_equal(y[same_el], z[same_el])


# ------------------------------------------------------------------ error bound

@pytest.mark.parametrize("name", list(FORMATS))
@SETTINGS
@given(x=inputs())
def test_error_at_most_half_grid_step(name, x):
  fmt = FORMATS[name]
  q = _quant(fmt)(jnp.asarray(x))
  y = np.asarray(q.dequantize(), np.float64)
  unit = _unit_per_element(q, fmt)
  bound = _half_step_bound(x, unit, fmt)
  slack = 2.0 ** -21 * (np.abs(x) + np.abs(y))  # float32 roundings of ratio and product
  err = np.abs(x.astype(np.float64) - y)
  bad = ~(err <= bound + slack)
  assert not bad.any(), (x[bad][:4], y[bad][:4], bound[bad][:4])


# ------------------------------------------------------------------ masks

_MASK_ELEM = st.one_of(st.sampled_from([0.0, 1.0, -1.0, 2.0, -2.0, 3.0, np.nan]),
                       st.floats(-100, 100, width=32, allow_subnormal=False))


@pytest.mark.parametrize("pattern", ["4:8-pairs", "2:4", "3:8", "1:4", "8:16-pairs"])
@SETTINGS
@given(x=st.one_of(hnp.arrays(np.float32, (4, 64), elements=_MASK_ELEM),
                   heavy((4, 64))))
def test_mask_keeps_exactly_n_of_every_m(pattern, x):
  n, m, pairs = ref.parse_pattern(pattern)
  mk = np.asarray(jax.jit(lambda a: masks.nm_mask(a, pattern))(jnp.asarray(x)))
  g = mk.reshape(4, -1, m)
  assert np.all(g.sum(-1) == n)
  score = np.abs(x.astype(np.float64))
  score = np.where(np.isnan(score), np.inf, score).reshape(4, -1, m)
  if pairs:
    up = g.reshape(4, -1, m // 2, 2)
    assert np.all(up[..., 0] == up[..., 1])              # whole pairs only
    score = score.reshape(4, -1, m // 2, 2).max(-1)
    g = up[..., 0]
  # every kept unit scores >= every dropped unit of its group
  kept_min = np.where(g, score, np.inf).min(-1)
  drop_max = np.where(~g, score, -np.inf).max(-1)
  assert np.all(kept_min >= drop_max)
  assert np.array_equal(mk, ref.nm_mask(x, pattern))


# ------------------------------------------------------------------ decomposition

SHARQ = ["sharq-nvfp4", "sharq-mxfp4", "sharq-hif4", "sharq-nvfp4-raw-residual"]


@functools.lru_cache(maxsize=None)
def _decomp(name):
  cfg = methods.get_method(name).activation.config

  def f(x):
    d = decompose.decompose(x, cfg)
    xp, s = decompose.scaled_input(x, cfg.tensor_scale)
    return xp, s, d.mask, d.backbone.dequantize(), d.residual.dequantize()

  return jax.jit(f), cfg


@pytest.mark.parametrize("name", SHARQ)
@SETTINGS
@given(x=inputs())
def test_x_prime_is_backbone_plus_residual_exactly(name, x):
  """R = f32(X' − Ŝ) loses nothing: Ŝ + R = X' exactly (Sterbenz: Ŝ is within a factor
  2 of X' at kept positions, and 0 at dropped ones), and R̂ = DQ(Q(R))."""
  f, cfg = _decomp(name)
  xp, s, mk, sh, rh = (np.asarray(a) for a in f(jnp.asarray(x)))
  raw = name.endswith("raw-residual")
  S = np.where(mk, xp, np.float32(0))
  r = xp - (S if raw else sh)                         # float32 subtraction (IEEE)
  assert r.dtype == np.float32
  assert np.array_equal(((S if raw else sh).astype(np.float64) + r.astype(np.float64)),
                        xp.astype(np.float64))
  assert np.all(sh[~mk] == 0)
  assert np.array_equal(r[~mk], xp[~mk])
  if raw:
    assert np.all(r[mk] == 0)
  rq = np.asarray(_qdq_res(cfg.residual)(jnp.asarray(r)))
  assert np.array_equal(rq, rh)


@functools.lru_cache(maxsize=None)
def _qdq_res(fmt):
  return jax.jit(lambda r: formats.quantize(r, fmt, tensor_scale=1.0).dequantize())


# ------------------------------------------------------------------ power-of-two scaling

@pytest.mark.parametrize("name", list(FORMATS))
@SETTINGS
@given(x=heavy(max_binades=20.0), k=st.integers(-30, 30))
def test_scaling_by_power_of_two_commutes(name, x, k):
  fmt = FORMATS[name]
  x = _clean(x, 2.0 ** -60)
  ax = np.abs(x[x != 0])
  assume(ax.size and ax.max() * 2.0 ** k < 2.0 ** 100 and ax.min() * 2.0 ** k > 2.0 ** -100)
  if isinstance(fmt, formats.HiF4):
    vmax = np.abs(x).reshape(-1, 64).max(-1)
    vmax = vmax[vmax > 0] * 2.0 ** k / 7.0
    assume(vmax.size == 0 or (vmax.min() > 2.0 ** -47 and vmax.max() < 2.0 ** 15))
    vmax0 = np.abs(x).reshape(-1, 64).max(-1)
    assume(np.all(vmax0[vmax0 > 0] / 7.0 > 2.0 ** -47) and np.all(vmax0 / 7.0 < 2.0 ** 15))
  y = np.asarray(_qdq(fmt)(jnp.asarray(x)), np.float64)
  y2 = np.asarray(_qdq(fmt)(jnp.asarray(np.ldexp(x, k).astype(np.float32))), np.float64)
  assert np.array_equal(np.ldexp(y, k), y2)


# ------------------------------------------------------------------ SharQ beats NVFP4

@functools.lru_cache(maxsize=None)
def _fq(name):
  return jax.jit(methods.get_method(name).activation.fake_quant)


@SETTINGS
@given(seed=st.integers(0, 2 ** 32 - 1), chans=st.integers(1, 8),
       binades=st.floats(0.0, 4.0))
def test_sharq_nvfp4_error_not_above_nvfp4_with_outlier_channels(seed, chans, binades):
  rng = np.random.default_rng(seed)
  x = ref.heavy_tailed(rng, 64, 512, binades=binades, outlier_channels=chans,
                       channel_gain=50.0)
  xj = jnp.asarray(x)
  e_sharq = np.mean((np.asarray(_fq("sharq-nvfp4")(xj), np.float64) - x) ** 2)
  e_nv = np.mean((np.asarray(_fq("nvfp4")(xj), np.float64) - x) ** 2)
  assert e_sharq <= e_nv, (e_sharq, e_nv)
