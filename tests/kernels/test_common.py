"""The kernels' bit-level numerics helpers against the core library and ml_dtypes."""

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from sharq_jax import formats as F
from sharq_jax.kernels import common as C
from tests.kernels import ptx_f32


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


# The PTX sequences themselves, run by tests/kernels/ptx_f32.py (one rounding per
# instruction, FMA emulated exactly), against IEEE division (NumPy's float32 division).
def _e4m3_significand_divisors():
  sig = (1 + np.arange(8) / 8).astype(np.float32)  # every E4M3 significand
  return np.concatenate([sig * np.float32(2.0**e) for e in (-9, -3, 0, 5, 8)])


def _near_midpoint_dividends(rng, y, n):
  """x with x / y just around midpoints of the float32 grid, and random x."""
  mu = (rng.integers(2**23, 2**24, n) * 2 + 1).astype(np.float64) * 2.0**-24
  mu = mu * np.exp2(rng.integers(-20, 12, n))
  near = (mu * np.float64(y)).astype(np.float32)
  x = np.concatenate([near, np.nextafter(near, np.float32(0)),
                      np.nextafter(near, np.float32(np.inf)),
                      rng.uniform(-3000, 3000, n).astype(np.float32) * y])
  return np.concatenate([x, -x]).astype(np.float32)


def test_fma_emulation_rounds_once():
  """ptx_f32.fma32 against hand-made cases: products on a float32 midpoint pushed off
  it by a tiny addend (a float64 sum would land on the midpoint and tie to even), signed
  zeros, and the overflow midpoint."""
  f = np.float32
  one_eps = f(1 + 2.0**-12)  # (1 + 2^-12)^2 = 1 + 2^-11 + 2^-24: a float32 midpoint
  lo, hi = f(1 + 2.0**-11), np.nextafter(f(1 + 2.0**-11), f(2))
  for c, want in ((2.0**-100, hi), (-(2.0**-100), lo), (0.0, lo)):  # lo is even
    assert ptx_f32.fma32(one_eps, one_eps, f(c)) == want, c
  neg = ptx_f32.fma32(-one_eps, one_eps, f(2.0**-100))  # -(midpoint) + tiny: toward 0
  assert neg == -lo
  zeros = ptx_f32.fma32(f([0.0, -0.0, 1.0, -0.0]), f([3.0, 3.0, 2.0, -3.0]),
                        f([-0.0, -0.0, -2.0, -0.0]))
  np.testing.assert_array_equal(np.signbit(zeros), [False, True, False, False])
  assert not zeros.any()
  # 2^128 − 2^103 = (31·601·2^88)·(1801·2^15): the midpoint between FLT_MAX and 2^128.
  a, b = f(31 * 601 * 2.0**88), f(1801 * 2.0**15)
  fmax = np.finfo(np.float32).max
  assert ptx_f32.fma32(a, b, f(-(2.0**-20))) == fmax
  assert np.isposinf(ptx_f32.fma32(a, b, f(2.0**-20)))
  assert np.isposinf(ptx_f32.fma32(a, b, f(0.0)))  # the tie goes to the even 2^128
  assert ptx_f32.fma32(-a, b, f(2.0**-20)) == -fmax


def _rcp_off_by(ulps):
  def rcp(y):
    r = ptx_f32.rcp_round_to_nearest(y)
    for _ in range(abs(ulps)):
      r = np.nextafter(r, np.float32(np.inf if ulps > 0 else 0))
    return r
  return rcp


def test_short_divisor_ptx_is_correctly_rounded():
  """div_rn_short's PTX gives x / y rounded once, for every E4M3 significand (and 6)
  and x near the quotient's rounding midpoints or random; -0 gives +0."""
  rng = np.random.default_rng(6)
  for y in list(_e4m3_significand_divisors()) + [np.float32(6.0)]:
    x = _near_midpoint_dividends(rng, y, 5000)
    z = np.float32(1) / y
    got = ptx_f32.run(C.div_short_asm(), x, y, z)
    np.testing.assert_array_equal(got, x / y, err_msg=f"y={y}")
    capped = ptx_f32.run(C.div_short_asm(6.0), x, y, z)
    np.testing.assert_array_equal(capped, np.minimum(np.abs(x / y), 6), err_msg=f"y={y}")
  zeros = ptx_f32.run(C.div_short_asm(), np.float32([0.0, -0.0]), np.float32(1.5),
                      np.float32(1) / np.float32(1.5))
  assert not np.signbit(zeros).any()


def test_short_reciprocal_ptx_corrects_any_one_ulp_start():
  """rcp_rn_short's PTX: from an rcp.approx up to 1 ulp off, RN(1/y) for every E4M3
  value."""
  ys = _e4m3_significand_divisors()
  for ulps in (-1, 0, 1):
    got = ptx_f32.run(C.RCP_SHORT_ASM, ys, rcp_approx=_rcp_off_by(ulps))
    np.testing.assert_array_equal(got, np.float32(1) / ys)


def test_div_by_scale_ptx_is_correctly_rounded_and_keeps_the_sign_of_zero():
  """div_rn_by_scale's PTX (reciprocal hoisted, then 3 instructions) gives
  x / s rounded once for random 24-bit scales and quotients in [2^-12, 2688], and -0
  for -0."""
  rng = np.random.default_rng(8)
  for s in np.exp2(rng.uniform(-50, 50, 40)).astype(np.float32):
    for ulps in (-1, 0, 1):
      z = ptx_f32.run(C.RCP_REFINED_ASM, s, rcp_approx=_rcp_off_by(ulps))
      q = np.exp2(rng.uniform(-12, np.log2(2688), 4000)) * rng.choice([-1, 1], 4000)
      x = np.concatenate([(q * np.float64(s)).astype(np.float32), np.float32([0, -0.0])])
      got = ptx_f32.run(C.DIV_BY_SCALE_ASM, x, s, z)
      np.testing.assert_array_equal(got, x / s, err_msg=f"s={s} ulps={ulps}")
      np.testing.assert_array_equal(np.signbit(got), np.signbit(x / s))


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


@pytest.mark.parametrize("depth,n_iter", [(4, 4), (4, 8), (2, 5), (4, 2)])
def test_stream_queues_calls_after_loads_between_the_loads_and_their_step(depth, n_iter):
  # Trace-time events: every load site, every after_loads call and every multiply, in
  # program order. Each step's loads must be followed by after_loads before its
  # multiply; where the ring holds all steps (n_iter <= depth) no load is traced after
  # the first n_iter (the loop body's clamped loads would only repeat the last step).
  events = []

  def load(it):
    events.append("load")
    return jnp.asarray(it) + 100

  def multiply(it, loaded, acc):
    events.append("mul")
    return acc * 31 + jnp.asarray(it) + loaded

  got = C.stream_queues(n_iter, [(load, depth)], multiply, jnp.int32(0),
                        after_loads=lambda: events.append("fence"))
  want = 0
  for it in range(n_iter):
    want = (want * 31 + it + it + 100) % 2**32
  assert int(got) % 2**32 == want
  first = min(depth, n_iter)
  assert events[:first + 1] == ["load"] * first + ["fence"]
  for i, e in enumerate(events):
    if e == "load":
      nxt = events[i + 1:]
      assert nxt[:nxt.index("mul")].count("fence") >= 1, events
  if n_iter <= depth:
    assert events.count("load") == n_iter, events
