"""Library formats vs the independent numpy reference, bit for bit.

Each format sees >= 1e6 heavy-tailed float32 values (Gaussian with rare 10-100x outliers,
rows scaled over many binades, exact-zero blocks), plus tie-heavy grid-aligned data and
NaN/Inf-poisoned blocks.  Dequantized values must be equal (±0 equal, NaN positions
equal); block scales and tensor scales are compared too.  Mismatch counts are printed
(run with -s).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.reference import numpy_ref as ref

import sharq_jax.formats as formats

ROWS, K = 1024, 1024  # 1,048,576 values per format configuration


def _chunks(seed, rows=ROWS, k=K):
  """Four 256-row tensors with different binade spreads (narrow .. 40 binades)."""
  rng = np.random.default_rng(seed)
  out = []
  for binades in (0.0, 6.0, 20.0, 40.0):
    out.append(ref.heavy_tailed(rng, rows // 4, k, binades=binades))
  return out


@functools.lru_cache(maxsize=None)
def _lib_qdq(fmt, with_scale: bool):
  if with_scale:
    return jax.jit(lambda x, s: formats.quantize(x, fmt, tensor_scale=s))
  return jax.jit(lambda x: formats.quantize(x, fmt))


def _report(name, n, total, ex):
  print(f"\n[{name}] mismatches: {n} / {total}" + (f"  e.g. {ex}" if n else ""))


def _check(name, got, exp, x):
  n, ex = ref.mismatch(got, exp, x)
  _report(name, n, np.size(exp), ex)
  return n


def _e4m3_to_f64(a):
  return np.asarray(a).astype(np.float64)


# ------------------------------------------------------------------ NVFP4

NV_CONFIGS = [
    (16, "tensor"), (32, "tensor"), (16, "row"), (32, "row"),
]


@pytest.mark.parametrize("block,gran", NV_CONFIGS)
def test_nvfp4_vs_reference(block, gran):
  g = {"tensor": formats.ScaleGranularity.PER_TENSOR,
       "row": formats.ScaleGranularity.PER_ROW}[gran]
  fmt = formats.NVFP4(block_size=block, scale_granularity=g)
  total = 0
  for i, x in enumerate(_chunks(100 + block)):
    q = _lib_qdq(fmt, False)(jnp.asarray(x))
    r = ref.nvfp4_quantize(x, block, gran)
    total += _check(f"nvfp4/{block}/{gran} chunk{i} deq", np.asarray(q.dequantize()), r.deq, x)
    total += _check(f"nvfp4/{block}/{gran} chunk{i} tensor_scale",
                    np.broadcast_to(np.asarray(q.tensor_scale), np.shape(r.tensor_scale)),
                    r.tensor_scale, None)
    total += _check(f"nvfp4/{block}/{gran} chunk{i} block_scale",
                    _e4m3_to_f64(q.scales), r.block_scale, None)
    total += _check(f"nvfp4/{block}/{gran} chunk{i} codes",
                    np.asarray(q.codes).astype(np.float64), r.codes, x)
  assert total == 0


def test_nvfp4_given_tensor_scale_vs_reference():
  fmt = formats.NVFP4(block_size=16)
  total = 0
  for i, x in enumerate(_chunks(7)):
    s = np.float32(ref.finite_amax(x) / 2688.0 * 0.37)  # an arbitrary external scale
    q = _lib_qdq(fmt, True)(jnp.asarray(x), jnp.float32(s))
    r = ref.nvfp4_quantize(x, 16, tensor_scale=s)
    total += _check(f"nvfp4/16/given chunk{i}", np.asarray(q.dequantize()), r.deq, x)
    # tensor scale 1 (the X' domain quantizer SharQ uses)
    xp = (x / (ref.finite_amax(x) / 2688.0)).astype(np.float32)
    q1 = _lib_qdq(fmt, True)(jnp.asarray(xp), jnp.float32(1.0))
    r1 = ref.nvfp4_quantize(xp, 16, tensor_scale=1.0)
    total += _check(f"nvfp4/16/scale1 chunk{i}", np.asarray(q1.dequantize()), r1.deq, xp)
  assert total == 0


def _nv_tie_data(rng, rows, k, block):
  """Blocks whose amax is exactly 6*d (d an E4M3 value) so that, with tensor scale 1,
  d_b = d and the elements (E2M1 grid points and tie points times d) hit every tie."""
  e4 = ref.E4M3_VALUES[1:127]
  e4 = e4[(e4 >= 2.0 ** -6)]
  nb = k // block
  d = rng.choice(e4, (rows, nb, 1))
  pts = np.array([0, .25, .5, .75, 1, 1.25, 1.5, 1.75, 2, 2.5, 3, 3.5, 4, 5, 6])
  t = rng.choice(pts, (rows, nb, block)) * rng.choice([-1, 1], (rows, nb, block))
  t[..., 0] = 6.0 * rng.choice([-1, 1], (rows, nb))
  return (t * d).reshape(rows, k).astype(np.float32)


def test_nvfp4_tie_points_vs_reference():
  rng = np.random.default_rng(3)
  total = 0
  for block in (16, 32):
    x = _nv_tie_data(rng, 256, 1024, block)
    q = _lib_qdq(formats.NVFP4(block_size=block), True)(jnp.asarray(x), jnp.float32(1.0))
    r = ref.nvfp4_quantize(x, block, tensor_scale=1.0)
    total += _check(f"nvfp4/{block} ties", np.asarray(q.dequantize()), r.deq, x)
  assert total == 0


# ------------------------------------------------------------------ MXFP4

@pytest.mark.parametrize("block", [32, 64])
@pytest.mark.parametrize("rounding", ["floor", "ceil"])
def test_mxfp4_vs_reference(block, rounding):
  fmt = formats.MXFP4(block_size=block, scale_rounding={
      "floor": formats.ScaleRounding.FLOOR, "ceil": formats.ScaleRounding.CEIL}[rounding])
  total = 0
  for i, x in enumerate(_chunks(200 + block)):
    q = _lib_qdq(fmt, False)(jnp.asarray(x))
    r = ref.mxfp4_quantize(x, block, rounding)
    total += _check(f"mxfp4/{block}/{rounding} chunk{i} deq", np.asarray(q.dequantize()),
                    r.deq, x)
    total += _check(f"mxfp4/{block}/{rounding} chunk{i} scale",
                    np.asarray(q.scales).astype(np.float64), np.ldexp(1.0, r.exponent.astype(int)),
                    None)
    total += _check(f"mxfp4/{block}/{rounding} chunk{i} codes",
                    np.asarray(q.codes).astype(np.float64), r.codes, x)
  assert total == 0


def test_mxfp4_tie_points_vs_reference():
  rng = np.random.default_rng(4)
  rows, k, b = 256, 1024, 32
  nb = k // b
  j = rng.integers(-60, 60, (rows, nb, 1)).astype(np.float64)
  pts = np.array([0, .25, .5, .75, 1, 1.25, 1.5, 1.75, 2, 2.5, 3, 3.5, 4, 5, 6, 7])
  t = rng.choice(pts, (rows, nb, b)) * rng.choice([-1, 1], (rows, nb, b))
  t[..., 0] = rng.choice([4.0, 6.0, 7.0, 7.5])  # amax in [4, 8): e_b = j
  x = (t * np.exp2(j)).reshape(rows, k).astype(np.float32)
  total = 0
  for rounding, rr in [("floor", formats.ScaleRounding.FLOOR),
                       ("ceil", formats.ScaleRounding.CEIL)]:
    q = _lib_qdq(formats.MXFP4(scale_rounding=rr), False)(jnp.asarray(x))
    total += _check(f"mxfp4/32/{rounding} ties", np.asarray(q.dequantize()),
                    ref.mxfp4_qdq(x, 32, rounding), x)
  assert total == 0


# ------------------------------------------------------------------ HiF4

def test_hif4_vs_reference():
  fmt = formats.HiF4()
  total = 0
  for i, x in enumerate(_chunks(300)):
    q = _lib_qdq(fmt, False)(jnp.asarray(x))
    r = ref.hif4_quantize(x)
    total += _check(f"hif4 chunk{i} deq", np.asarray(q.dequantize()), r.deq, x)
    meta = np.asarray(q.scales)
    if meta.dtype == np.uint32:
      nm = int(np.sum(meta != r.meta))
      _report(f"hif4 chunk{i} metadata word", nm, meta.size, "")
      total += nm
  assert total == 0


def test_hif4_tie_points_vs_reference():
  """Units with Vmax = 7E (E on the E6M2 grid, so f32(Vmax/7) = E) and elements that are
  S1P2 tie points times E*2^j for j in 0..2."""
  rng = np.random.default_rng(5)
  rows, k = 256, 1024
  nu = k // 64
  E = np.exp2(rng.integers(-30, 14, (rows, nu, 1))) * rng.choice([1, 1.25, 1.5, 1.75],
                                                                 (rows, nu, 1))
  t = (rng.integers(0, 16, (rows, nu, 64)) / 8.0) * rng.choice([-1, 1], (rows, nu, 64))
  t = t * np.exp2(rng.integers(0, 3, (rows, nu, 64)))
  t[..., 0] = 7.0
  x = (t * E).reshape(rows, k).astype(np.float32)
  q = _lib_qdq(formats.HiF4(), False)(jnp.asarray(x))
  r = ref.hif4_quantize(x)
  n = _check("hif4 ties", np.asarray(q.dequantize()), r.deq, x)
  assert n == 0


def test_hif4_level1_scale_at_e6m2_ties():
  """Vmax = 7·t with t an E6M2 tie point (1.125, 1.375, 1.625, 1.875 times 2^e), so that
  f32(Vmax / 7) = t exactly and the E6M2 rounding decides on a tie (DESIGN §2.4)."""
  rng = np.random.default_rng(8)
  rows, k = 64, 1024
  nu = k // 64
  t = rng.choice([1.125, 1.375, 1.625, 1.875], (rows, nu, 1)) * np.exp2(
      rng.integers(-40, 14, (rows, nu, 1)))
  x = rng.uniform(-1, 1, (rows, nu, 64)) * 7 * t
  x[..., 0] = 7 * t[..., 0] * rng.choice([-1, 1], (rows, nu))
  x = x.reshape(rows, k).astype(np.float32)
  q = _lib_qdq(formats.HiF4(), False)(jnp.asarray(x))
  r = ref.hif4_quantize(x)
  e_lib = ref.E6M2_VALUES[(np.asarray(q.scales) & 255).astype(np.int64)]
  n = _check("hif4 E6M2 level-1 scale at ties", e_lib, r.e6m2, None)
  n += _check("hif4 E6M2-tie units deq", np.asarray(q.dequantize()), r.deq, x)
  assert n == 0


# ------------------------------------------------------------------ bad input (§2.7)

def _poison(x, rng, n=20):
  x = x.copy()
  flat = x.reshape(-1)
  idx = rng.choice(flat.size, n, replace=False)
  flat[idx[: n // 3]] = np.nan
  flat[idx[n // 3: 2 * n // 3]] = np.inf
  flat[idx[2 * n // 3:]] = -np.inf
  return x


@pytest.mark.parametrize("name", ["nvfp4", "nvfp4-row", "mxfp4", "mxfp4-ceil", "hif4"])
def test_nan_inf_poison_only_their_block(name):
  rng = np.random.default_rng(6)
  x = _poison(ref.heavy_tailed(rng, 64, 1024, binades=6.0), rng)
  fmt, fn = {
      "nvfp4": (formats.NVFP4(), lambda a: ref.nvfp4_qdq(a, 16)),
      "nvfp4-row": (formats.NVFP4(scale_granularity=formats.ScaleGranularity.PER_ROW),
                    lambda a: ref.nvfp4_qdq(a, 16, "row")),
      "mxfp4": (formats.MXFP4(), lambda a: ref.mxfp4_qdq(a, 32)),
      "mxfp4-ceil": (formats.MXFP4(scale_rounding=formats.ScaleRounding.CEIL),
                     lambda a: ref.mxfp4_qdq(a, 32, "ceil")),
      "hif4": (formats.HiF4(), ref.hif4_qdq),
  }[name]
  got = np.asarray(_lib_qdq(fmt, False)(jnp.asarray(x)).dequantize())
  exp = fn(x)
  assert np.sum(np.isnan(exp)) == fmt.block_size * np.sum(
      ~np.all(np.isfinite(x.reshape(-1, fmt.block_size)), -1))
  n = _check(f"{name} NaN/Inf poisoned", got, exp, x)
  assert n == 0


@pytest.mark.parametrize("fmt", [formats.NVFP4(), formats.NVFP4(block_size=32),
                                 formats.MXFP4(), formats.HiF4()],
                         ids=lambda f: f.name)
def test_all_zero_gives_exact_zero(fmt):
  x = np.zeros((4, 128), np.float32)
  got = np.asarray(formats.quantize(jnp.asarray(x), fmt).dequantize())
  assert np.all(got == 0) and not np.any(np.isnan(got))
  x[1, 5] = -0.0
  got = np.asarray(formats.quantize(jnp.asarray(x), fmt).dequantize())
  assert np.all(got == 0)


@pytest.mark.parametrize("fmt", [formats.NVFP4(), formats.MXFP4(), formats.HiF4()],
                         ids=lambda f: f.name)
def test_k_not_multiple_raises_value_error_naming_layer(fmt):
  x = jnp.ones((2, fmt.block_size + 1), jnp.float32)
  with pytest.raises(ValueError, match="my_layer"):
    formats.quantize(x, fmt, name="my_layer")
