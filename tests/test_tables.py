"""Exhaustive table tests: bit layouts, tie points, saturation.

The reference (tests/reference/numpy_ref.py) decodes every code from its bit layout;
here those tables are checked against ml_dtypes and against the values DESIGN.md §2
spells out, and the reference rounding is checked at every tie point.  Where the library
exposes the same element function it is checked on the same points.
"""

import ml_dtypes
import numpy as np

from tests.reference import numpy_ref as ref


def _same(a, b):
  a = np.asarray(a, np.float64)
  b = np.asarray(b, np.float64)
  return np.array_equal(np.isnan(a), np.isnan(b)) and np.array_equal(
      np.nan_to_num(a), np.nan_to_num(b))


# ---------------------------------------------------------------- E2M1

def test_e2m1_bit_layout_values():
  expected = [0, .5, 1, 1.5, 2, 3, 4, 6]
  assert list(ref.E2M1_VALUES[:8]) == expected
  assert list(ref.E2M1_VALUES[8:]) == [-v for v in expected]
  assert np.signbit(ref.E2M1_VALUES[8])  # code 8 is -0


def test_e2m1_table_vs_ml_dtypes():
  md = np.arange(16, dtype=np.uint8).view(ml_dtypes.float4_e2m1fn).astype(np.float64)
  assert _same(md, ref.E2M1_VALUES)
  assert np.array_equal(np.signbit(md), np.signbit(ref.E2M1_VALUES))


E2M1_TIES = [(0.25, 0.0), (0.75, 1.0), (1.25, 1.0), (1.75, 2.0), (2.5, 2.0), (3.5, 4.0),
             (5.0, 4.0)]


def _e2m1_points():
  """(input, expected) for every tie, its float32 neighbours, exact grid points and
  saturation, both signs."""
  pts = []
  grid = [0, .5, 1, 1.5, 2, 3, 4, 6]
  for t, e in E2M1_TIES:
    lo = max(g for g in grid if g < t)
    hi = min(g for g in grid if g > t)
    pts.append((t, e))
    pts.append((float(np.nextafter(np.float32(t), np.float32(0))), lo))
    pts.append((float(np.nextafter(np.float32(t), np.float32(10))), hi))
  for g in grid:
    pts.append((g, g))
  for v in [6.0, 6.5, 7.0, 100.0, 3.0e38, float(np.finfo(np.float32).max)]:
    pts.append((v, 6.0))
  pts.append((float(np.finfo(np.float32).tiny), 0.0))
  pts.append((1e-30, 0.0))
  out = []
  for v, e in pts:
    out.append((v, e))
    out.append((-v, -e))
  return out


E2M1_POINTS = _e2m1_points()


def test_e2m1_reference_ties_and_saturation():
  x = np.array([p[0] for p in E2M1_POINTS])
  e = np.array([p[1] for p in E2M1_POINTS])
  got = ref.e2m1_round(x)
  bad = [(xi, ei, gi) for xi, ei, gi in zip(x, e, got) if ei != gi]
  assert not bad, bad
  # the sign is kept, also for results that round to zero
  assert np.array_equal(np.signbit(got[x != 0]), np.signbit(x[x != 0]))


def test_e2m1_reference_vs_ml_dtypes_on_dense_sweep():
  """ml_dtypes' cast is RNE; inside [-6, 6] it must agree with the reference."""
  rng = np.random.default_rng(0)
  x = np.concatenate([
      np.linspace(-6, 6, 200001, dtype=np.float32),
      rng.uniform(-6, 6, 100000).astype(np.float32),
  ])
  md = x.astype(ml_dtypes.float4_e2m1fn).astype(np.float64)
  assert _same(ref.e2m1_round(x), md)


def test_e2m1_library_element_on_tie_points():
  import sharq_jax.formats as formats
  import jax.numpy as jnp
  x = np.array([p[0] for p in E2M1_POINTS], np.float32)
  e = np.array([p[1] for p in E2M1_POINTS])
  got = np.asarray(formats.e2m1_round(jnp.asarray(x)), np.float64)
  bad = [(float(xi), float(ei), float(gi)) for xi, ei, gi in zip(x, e, got) if ei != gi]
  print(f"\nlibrary e2m1_round tie-point mismatches: {len(bad)} of {len(x)}")
  assert not bad, bad


# ---------------------------------------------------------------- S1P2

def test_s1p2_ties_and_saturation():
  pts = []
  for k in range(7):
    t = (k + 0.5) / 4
    pts.append((t, (k if k % 2 == 0 else k + 1) / 4))
    pts.append((float(np.nextafter(np.float32(t), np.float32(0))), k / 4))
    pts.append((float(np.nextafter(np.float32(t), np.float32(9))), (k + 1) / 4))
  for k in range(8):
    pts.append((k / 4, k / 4))
  pts += [(1.875, 1.75), (1.9, 1.75), (2.0, 1.75), (1e30, 1.75)]
  x = np.array([p[0] for p in pts] + [-p[0] for p in pts])
  e = np.array([p[1] for p in pts] + [-p[1] for p in pts])
  got = ref.s1p2_round(x)
  assert np.array_equal(got, e), list(zip(x[got != e], e[got != e], got[got != e]))


# ---------------------------------------------------------------- E4M3

def test_e4m3_bit_layout_vs_ml_dtypes_all_256():
  md = np.arange(256, dtype=np.uint8).view(ml_dtypes.float8_e4m3fn).astype(np.float64)
  assert _same(ref.E4M3_VALUES, md)
  assert np.array_equal(np.signbit(ref.E4M3_VALUES[~np.isnan(md)]),
                        np.signbit(md[~np.isnan(md)]))
  assert np.isnan(ref.E4M3_VALUES[0x7F]) and np.isnan(ref.E4M3_VALUES[0xFF])
  assert np.sum(np.isnan(ref.E4M3_VALUES)) == 2
  assert np.nanmax(ref.E4M3_VALUES) == 448.0
  assert ref.E4M3_VALUES[1] == 2.0 ** -9       # smallest subnormal
  assert ref.E4M3_VALUES[8] == 2.0 ** -6       # smallest normal
  assert ref.E4M3_VALUES[7] == 7 * 2.0 ** -9   # largest subnormal


def _e4m3_points():
  pos = ref.E4M3_VALUES[:127]
  mids = (pos[:-1] + pos[1:]) / 2
  pts = [pos, mids]
  for m in mids:
    m32 = np.float32(m)
    pts.append(np.array([np.nextafter(m32, np.float32(0)), np.nextafter(m32, np.float32(500))],
                        np.float64))
  pts.append(np.array([2.0 ** -10, 2.0 ** -11, 2.0 ** -12, 1e-20, 1e-30, 3 * 2.0 ** -11,
                       440.0, 447.99, 448.0], np.float64))
  x = np.concatenate(pts)
  x = x[x <= 448]
  return np.concatenate([x, -x]).astype(np.float32)


def test_e4m3_reference_rounding_vs_ml_dtypes_ties_and_subnormals():
  x = _e4m3_points()
  md = x.astype(ml_dtypes.float8_e4m3fn).astype(np.float64)
  got = ref.e4m3_round(x.astype(np.float64))
  bad = np.nonzero(got != md)[0]
  assert bad.size == 0, [(float(x[i]), md[i], got[i]) for i in bad[:10]]
  # explicit tie examples: ties go to the even code
  assert ref.e4m3_round(np.array([2.0 ** -10]))[0] == 0.0           # 0 vs 2^-9
  assert ref.e4m3_round(np.array([3 * 2.0 ** -10]))[0] == 2 * 2.0 ** -9   # code 1|2 -> 2
  assert ref.e4m3_round(np.array([1.0625]))[0] == 1.0               # 1 vs 1.125
  assert ref.e4m3_round(np.array([1.1875]))[0] == 1.25              # 1.125 vs 1.25
  assert ref.e4m3_round(np.array([432.0]))[0] == 448.0   # 416 (m=5) vs 448 (m=6) -> even
  assert ref.e4m3_round(np.array([400.0]))[0] == 384.0   # 384 (m=4) vs 416 (m=5) -> even


def test_e4m3_reference_random_vs_ml_dtypes():
  rng = np.random.default_rng(1)
  x = np.exp2(rng.uniform(-14, np.log2(448), 300000)).astype(np.float32)
  md = x.astype(ml_dtypes.float8_e4m3fn).astype(np.float64)
  assert np.array_equal(ref.e4m3_round(x.astype(np.float64)), md)


# ---------------------------------------------------------------- E8M0

def test_e8m0_bit_layout_vs_ml_dtypes_all_256():
  md = np.arange(256, dtype=np.uint8).view(ml_dtypes.float8_e8m0fnu).astype(np.float64)
  assert _same(ref.E8M0_VALUES, md)
  assert ref.E8M0_VALUES[0] == 2.0 ** -127
  assert ref.E8M0_VALUES[127] == 1.0
  assert ref.E8M0_VALUES[254] == 2.0 ** 127
  assert np.isnan(ref.E8M0_VALUES[255])


# ---------------------------------------------------------------- E6M2 (HiF4 level 1)

def test_e6m2_codes():
  v = ref.E6M2_VALUES
  assert v[0] == 2.0 ** -48
  assert v[1] == 2.0 ** -48 * 1.25
  assert v[3] == 2.0 ** -48 * 1.75
  assert v[4] == 2.0 ** -47
  assert v[(0 + 48) << 2] == 1.0
  assert v[((0 + 48) << 2) | 2] == 1.5
  assert v[254] == 2.0 ** 15 * 1.5     # largest finite scale
  assert np.isnan(v[255])              # the bit pattern of 2^15 * 1.75 is NaN
  assert np.all(np.diff(v[:255]) > 0)
  # every finite code round-trips through the code function
  assert np.array_equal(ref.e6m2_code(v[:255]), np.arange(255))


def test_e6m2_rounding():
  r = ref.e6m2_round
  # ties to even mantissa, carry into the exponent
  assert r(np.array([1.125]))[0] == 1.0      # 1.0 (m=0) vs 1.25 (m=1) -> even
  assert r(np.array([1.375]))[0] == 1.5      # 1.25 (1) vs 1.5 (2) -> 1.5
  assert r(np.array([1.625]))[0] == 1.5      # 1.5 (2) vs 1.75 (3) -> 1.5
  assert r(np.array([1.875]))[0] == 2.0      # 1.75 (3) vs 2.0 (carry, m=0) -> 2
  assert r(np.array([1.874]))[0] == 1.75
  assert r(np.array([3.0 / 7.0]))[0] == 0.4375  # 0.42857 = 1.714 * 2^-2 -> 1.75*2^-2
  # range
  assert r(np.array([0.0]))[0] == 2.0 ** -48
  assert r(np.array([2.0 ** -60]))[0] == 2.0 ** -48
  assert r(np.array([2.0 ** -48 * 1.1]))[0] == 2.0 ** -48
  assert r(np.array([2.0 ** 15 * 1.5]))[0] == 2.0 ** 15 * 1.5
  assert r(np.array([2.0 ** 15 * 1.7]))[0] == 2.0 ** 15 * 1.5   # 1.75 code is NaN
  assert r(np.array([2.0 ** 15 * 1.9]))[0] == 2.0 ** 15 * 1.5
  assert r(np.array([2.0 ** 40]))[0] == 2.0 ** 15 * 1.5
  # exhaustive: on its finite codes and at every finite midpoint, the nearest-table search
  # agrees with the literal "RNE then saturate" reading of docs/NUMERICS.md
  pos = ref.E6M2_VALUES[:255]
  mids = (pos[:-1] + pos[1:]) / 2
  pts = np.concatenate([pos, mids, mids * (1 + 2.0 ** -20), mids * (1 - 2.0 ** -20)])
  pts = pts[pts <= 2.0 ** 15 * 1.5]
  assert np.array_equal(r(pts), ref.e6m2_round_rne_then_saturate(pts))


# ---------------------------------------------------------------- masks: tiny truth table

def test_mask_reference_truth_table():
  x = np.array([[1, 1, 3, 0, 2, 2, 0, .5]])
  assert ref.nm_mask(x, "4:8-pairs").tolist() == [[0, 0, 1, 1, 1, 1, 0, 0]]
  # all ties -> lowest indices
  z = np.zeros((1, 8))
  assert ref.nm_mask(z, "4:8-pairs").tolist() == [[1, 1, 1, 1, 0, 0, 0, 0]]
  assert ref.nm_mask(z, "2:4").tolist() == [[1, 1, 0, 0, 1, 1, 0, 0]]
  assert ref.nm_mask(np.array([[-1, 3, 2, -3]]), "2:4").tolist() == [[0, 1, 0, 1]]
  assert ref.nm_mask(np.array([[5, 1, 5, 5]]), "2:4").tolist() == [[1, 0, 1, 0]]
  assert ref.nm_mask(np.array([[1, 2, 3, 4, 5, 6]]), "1:3").tolist() == [[0, 0, 1, 0, 0, 1]]


# ---------------------------------------------------------------- library E6M2 helpers

def test_library_decode_e6m2_all_256_codes():
  import sharq_jax.formats as formats
  import jax.numpy as jnp
  got = np.asarray(formats.decode_e6m2(jnp.arange(256, dtype=jnp.uint8)), np.float64)
  n, ex = ref.mismatch(got, ref.E6M2_VALUES)
  print(f"\nlibrary decode_e6m2 mismatches: {n} of 256 {ex}")
  assert n == 0


def test_library_round_e6m2_ties_carry_and_range():
  import sharq_jax.formats as formats
  import jax.numpy as jnp
  pos = ref.E6M2_VALUES[:255]
  mids = (pos[:-1] + pos[1:]) / 2
  x = np.concatenate([
      pos, mids, mids * (1 + 2.0 ** -20), mids * (1 - 2.0 ** -20),
      # normal float32 values below 2^-48 and above the largest finite scale
      [0.0, 2.0 ** -60, 2.0 ** -49, 2.0 ** -48 * 0.9, 2.0 ** 15 * 1.6, 2.0 ** 15 * 1.75,
       2.0 ** 15 * 1.9, 2.0 ** 16, 2.0 ** 40, 1e38]]).astype(np.float32)
  val, code = formats.round_e6m2(jnp.asarray(x))
  val = np.asarray(val, np.float64)
  code = np.asarray(code).astype(np.int64)
  exp = ref.e6m2_round(x.astype(np.float64))
  n, ex = ref.mismatch(val, exp, x)
  print(f"\nlibrary round_e6m2 value mismatches: {n} of {x.size} {ex}")
  assert n == 0
  assert np.array_equal(code, ref.e6m2_code(exp))
