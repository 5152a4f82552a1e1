"""The kernels' bit-level numerics helpers against the core library and ml_dtypes."""

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from sharq_jax import formats as F
from sharq_jax.kernels import common as C


def _e4m3_grid():
  codes = np.arange(0, 127, dtype=np.uint8)  # every finite non-negative E4M3 value
  return np.frombuffer(codes.tobytes(), dtype=ml_dtypes.float8_e4m3fn).astype(np.float32)


def test_e4m3_round_matches_ml_dtypes_on_grid_midpoints_and_random():
  rng = np.random.default_rng(0)
  grid = _e4m3_grid()
  mids = ((grid[1:].astype(np.float64) + grid[:-1]) / 2).astype(np.float32)
  r = np.concatenate([grid, mids, np.nextafter(mids, 0), np.nextafter(mids, 1e9),
                      rng.uniform(0, 448, 200_000),
                      np.exp2(rng.uniform(-30, 8.8, 200_000))]).astype(np.float32)
  r = np.minimum(r, 448).astype(np.float32)
  got = np.asarray(jax.jit(C.e4m3_round_nonneg)(r))
  want = r.astype(ml_dtypes.float8_e4m3fn).astype(np.float32)
  np.testing.assert_array_equal(got, want)


def test_e2m1_round_matches_core_including_ties_and_signed_zero():
  rng = np.random.default_rng(1)
  ticks = np.arange(-8, 8, 0.125, dtype=np.float32)
  q = np.concatenate([ticks, np.nextafter(ticks, 10), np.nextafter(ticks, -10),
                      rng.uniform(-9, 9, 200_000), [0.0, -0.0, 1e-30, -1e-30, 1e30, -1e30]])
  q = q.astype(np.float32)
  got = np.asarray(jax.jit(C.e2m1_round)(q))
  want = np.asarray(F.e2m1_round(jnp.asarray(q)))
  np.testing.assert_array_equal(got, want)
  np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
  np.testing.assert_array_equal(np.asarray(C.e2m1_nibble(jnp.asarray(want))),
                                np.asarray(F.e2m1_to_nibbles(jnp.asarray(want))))


def test_nibble_bit_moves_give_e2m1_times_2_pow_minus_14():
  b = np.arange(256, dtype=np.uint8)
  lo, hi = C.decode_nibbles_f16(jnp.asarray(b), gpu=False)
  scale = 2.0**-C.NIBBLE_F16_EXPONENT
  np.testing.assert_array_equal(np.asarray(lo, np.float32) * scale,
                                F.E2M1_CODE_VALUES[b & 15])
  np.testing.assert_array_equal(np.asarray(hi, np.float32) * scale,
                                F.E2M1_CODE_VALUES[b >> 4])


def test_scale_decode_every_e4m3_code():
  b = np.arange(256, dtype=np.uint8)
  ref = np.frombuffer(b.tobytes(), dtype=ml_dtypes.float8_e4m3fn).astype(np.float32)
  pos = b < 128  # block scales are non-negative
  np.testing.assert_array_equal(np.asarray(C.decode_e4m3_scale_f32(jnp.asarray(b)))[pos],
                                ref[pos])
  f16 = np.asarray(C.decode_e4m3_scale_f16(jnp.asarray(b)), np.float32)[pos]
  np.testing.assert_array_equal(f16, ref[pos] * 2.0**C.SCALE_F16_EXPONENT)


def test_weight_products_exact_in_float16():
  """code·2^-14 × scale·2^7 in float16 equals code × scale × 2^-7 for every pair."""
  codes = np.arange(16, dtype=np.uint8)
  scales = np.arange(1, 127, dtype=np.uint8)
  lo, _ = C.decode_nibbles_f16(jnp.asarray(codes), gpu=False)
  sc = C.decode_e4m3_scale_f16(jnp.asarray(scales))
  prod = np.asarray(lo[:, None] * sc[None, :], np.float64)
  exact = (F.E2M1_CODE_VALUES[codes].astype(np.float64)[:, None] *
           np.asarray(C.decode_e4m3_scale_f32(jnp.asarray(scales)), np.float64)[None, :])
  np.testing.assert_array_equal(prod, exact * 2.0**C.WEIGHT_F16_EXPONENT)


def test_block_scale_matches_core_formula():
  rng = np.random.default_rng(2)
  amax = np.concatenate([rng.uniform(0, 2700, 100_000), np.exp2(rng.uniform(-40, 11.4, 100_000)),
                         [0.0, 6 * 2.0**-10, 6 * 1.5 * 2.0**-10]]).astype(np.float32)
  got = np.asarray(jax.jit(lambda a: C.nvfp4_block_scale(a, gpu=False))(amax))
  with np.errstate(over="ignore"):
    ratio = np.minimum(amax / np.float32(6), np.float32(448)).astype(np.float32)
  d = ratio.astype(ml_dtypes.float8_e4m3fn).astype(np.float32)
  d = np.where((amax > 0) & (d == 0), np.float32(2.0**-9), d)
  np.testing.assert_array_equal(got, d)


@pytest.mark.parametrize("shape", [(7, 33), (1,)])
def test_div_rn_interpret_is_true_division(shape):
  rng = np.random.default_rng(3)
  x = rng.standard_normal(shape).astype(np.float32)
  y = np.float32(0.6904761791229248)
  got = np.asarray(jax.jit(lambda a: C.div_rn(a, y, gpu=False))(x))
  np.testing.assert_array_equal(got, x / y)


def test_e2m1_round_nonneg_matches_core_magnitudes():
  rng = np.random.default_rng(5)
  ticks = np.arange(0, 8, 0.125, dtype=np.float32)
  a = np.concatenate([ticks, np.nextafter(ticks, 10), np.nextafter(ticks[1:], -10),
                      rng.uniform(0, 9, 200_000), np.exp2(rng.uniform(-149, 3, 50_000)),
                      [0.0, 1e30, np.inf]]).astype(np.float32)
  got = np.asarray(jax.jit(C.e2m1_round_nonneg)(a))
  want = np.asarray(F.e2m1_round(jnp.asarray(a)))
  np.testing.assert_array_equal(got, want)
  small = a <= 6
  got = np.asarray(jax.jit(lambda v: C.e2m1_round_nonneg(v, capped=True))(a[small]))
  np.testing.assert_array_equal(got, want[small])


# The GPU sequences of div_rn_short and rcp_rn_short, emulated exactly in NumPy: both
# FMAs round once, which float64 with a TwoSum error term reproduces (products of two
# float32 are exact in float64; see _fma32).
def _fma32(a, b, c):
  """RN32(a·b + c) for float32 arrays, exactly."""
  p = a.astype(np.float64) * b.astype(np.float64)  # exact
  s = p + c.astype(np.float64)
  bb = s - p
  err = (p - (s - bb)) + (c.astype(np.float64) - bb)  # exact: a·b + c = s + err
  r = s.astype(np.float32)
  up = np.nextafter(r, np.float32(np.inf))
  down = np.nextafter(r, np.float32(-np.inf))
  # s64 exactly halfway between two float32 values: err (if any) breaks the tie.
  mid_up = (up.astype(np.float64) + r) / 2 == s
  mid_down = (down.astype(np.float64) + r) / 2 == s
  r = np.where(mid_up & (err > 0), up, r)
  r = np.where(mid_down & (err < 0), down, r)
  # Halfway with r even and err pointing at it is already right; r itself from the
  # float64 value's RNE may have gone the other way at a tie:
  return r.astype(np.float32)


def _short_divide_emulated(x, y, z):
  q = (x * z).astype(np.float32)
  r = _fma32(-q, y, x)
  return _fma32(r, z, q)


def _e4m3_significand_divisors():
  sig = (1 + np.arange(8) / 8).astype(np.float32)  # every E4M3 significand
  return np.concatenate([sig * np.float32(2.0**e) for e in (-9, -3, 0, 5, 8)])


def test_short_divisor_sequence_is_correctly_rounded():
  """div_rn_short's three GPU instructions give x / y rounded once, for every E4M3
  significand and x near the quotient's rounding midpoints or random."""
  rng = np.random.default_rng(6)
  ys = _e4m3_significand_divisors()
  for y in list(ys) + [np.float32(6.0)]:
    z = np.float32(1) / y
    # Quotients just around midpoints μ of the float32 grid, and random ones.
    mu = (rng.integers(2**23, 2**24, 20_000) * 2 + 1).astype(np.float64) * 2.0**-24
    mu = mu * np.exp2(rng.integers(-20, 12, mu.size))
    near = (mu * np.float64(y)).astype(np.float32)
    x = np.concatenate([near, np.nextafter(near, np.float32(0)),
                        np.nextafter(near, np.float32(np.inf)),
                        rng.uniform(-3000, 3000, 20_000).astype(np.float32) * y])
    x = x.astype(np.float32)
    want = x / y  # NumPy's float32 division is IEEE
    got = _short_divide_emulated(x, np.full_like(x, y), np.full_like(x, z))
    np.testing.assert_array_equal(got, want, err_msg=f"y={y}")


def test_short_reciprocal_step_corrects_any_one_ulp_start():
  """rcp_rn_short: from rcp.approx's ≤ 1-ulp start, one step gives RN(1/y)."""
  ys = _e4m3_significand_divisors()
  want = np.float32(1) / ys
  for start in (want, np.nextafter(want, np.float32(0)), np.nextafter(want, np.float32(9))):
    r = _fma32(-start, ys, np.ones_like(ys))
    np.testing.assert_array_equal(_fma32(r, start, start), want)


def test_short_division_interpret_mode_is_true_division_with_plus_zero():
  x = np.array([3.0, -0.0, 0.0, -7.5, 1e-30, 2688.0], np.float32)
  y = np.float32(1.125)
  got = np.asarray(C.div_rn_short(x, y, np.float32(1) / y, gpu=False))
  np.testing.assert_array_equal(got, x / y)
  assert not np.signbit(got[1])  # -0 / y gives +0, as on the GPU
  capped = np.asarray(C.div_rn_short(x, y, np.float32(1) / y, gpu=False, abs_cap=6.0))
  np.testing.assert_array_equal(capped, np.minimum(np.abs(x / y), 6))


def test_words_to_bytes_inverts_the_little_endian_word_view():
  b = np.random.default_rng(4).integers(0, 256, (3, 5, 16), dtype=np.uint8)
  words = C.bytes_to_words(jnp.asarray(b))
  np.testing.assert_array_equal(np.asarray(words), b.view("<u4"))  # numpy's own view
  np.testing.assert_array_equal(np.asarray(jax.jit(C.words_to_bytes)(words)), b)


@pytest.mark.parametrize("depth", [0, 1, 2, 3, 5])
def test_stream_queues_multiplies_every_step_once_in_order_with_its_own_loads(depth):
  # load(it) = it + 100, so a step that got a stale or clamped load shows; the fold
  # acc·31 + step + load is order-sensitive, so skipped, repeated or reordered steps show.
  for n_iter in (1, 2, 4, 6, 7):
    got = C.stream_queues(
        n_iter, [(lambda it: jnp.asarray(it) + 100, depth)],
        lambda it, loaded, acc: acc * 31 + jnp.asarray(it) + loaded, jnp.int32(0))
    want = 0
    for it in range(n_iter):
      want = (want * 31 + it + it + 100) % 2**32
    assert int(got) % 2**32 == want, (depth, n_iter)


@pytest.mark.parametrize("depths", [(8, 2), (3, 2), (0, 3), (4, 0), (6, 4), (1, 5)])
def test_stream_queues_gives_each_stream_its_own_steps_loads_at_any_depths(depths):
  # Two streams with different depths (the ring slots of the shallower one turn over
  # inside the unrolled body and in the peeled tail); each load is a distinct function
  # of the step, and the fold is order-sensitive.
  for n_iter in (1, 2, 3, 5, 8, 11, 13):
    streams = [(lambda it: jnp.asarray(it) + 100, depths[0]),
               (lambda it: jnp.asarray(it) * 7 + 1000, depths[1])]
    got = C.stream_queues(n_iter, streams,
                          lambda it, a, b, acc: acc * 31 + jnp.asarray(it) + a * 3 + b,
                          jnp.int32(0))
    want = 0
    for it in range(n_iter):
      want = (want * 31 + it + (it + 100) * 3 + it * 7 + 1000) % 2**32
    assert int(got) % 2**32 == want, (depths, n_iter)
