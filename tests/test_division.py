"""Correctly rounded float32 division (sharq_jax.formats.division and exact_divide)
against NumPy's IEEE float32 division, bit for bit."""

import jax
import numpy as np
import pytest

from sharq_jax.formats import division
from sharq_jax.formats.base import exact_divide


def _mismatches(got, want):
  got, want = np.asarray(got, np.float32), np.asarray(want, np.float32)
  same = (got.view(np.uint32) == want.view(np.uint32)) | (np.isnan(got) & np.isnan(want))
  return int(np.sum(~same))


def _ieee(a, b):
  with np.errstate(all="ignore"):
    return (np.asarray(a, np.float32) / np.asarray(b, np.float32)).astype(np.float32)


def _random_bits(rng, n):
  return rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32).view(np.float32)


CASES = {
    # every class of float32 (NaN payloads, infinities, subnormals, both zeros)
    "random bit patterns": lambda rng: (_random_bits(rng, 1 << 20), _random_bits(rng, 1 << 20)),
    # quotients around the subnormal range and the overflow threshold
    "subnormal and huge quotients": lambda rng: (
        (rng.standard_normal(1 << 20) * np.exp2(rng.integers(-149, 120, 1 << 20))).astype(np.float32),
        (rng.standard_normal(1 << 20) * np.exp2(rng.integers(-30, 30, 1 << 20))).astype(np.float32)),
    # every subnormal halved: exact ties in the subnormal range (round half to even)
    "subnormal ties": lambda rng: (np.arange(1, 1 << 23, dtype=np.uint32).view(np.float32),
                                   np.full((1 << 23) - 1, 2.0, np.float32)),
    # the divisors the formats use
    "tensor and block scale divisors": lambda rng: (
        np.abs(rng.standard_t(3, 1 << 20)).astype(np.float32) * 97.0,
        rng.choice(np.float32([2688.0, 6.0, 7.0, 0.0026785715, 448.0 * 6]), 1 << 20)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_integer_division_is_ieee(case):
  a, b = CASES[case](np.random.default_rng(sorted(CASES).index(case)))
  assert _mismatches(jax.jit(division.divide)(a, b), _ieee(a, b)) == 0


def test_specials():
  inf, nan = np.float32(np.inf), np.float32(np.nan)
  a = np.float32([0.0, -0.0, 0.0, 1.0, -1.0, inf, inf, -inf, nan, 1.0, 1.0, 3e38, 1e-45])
  b = np.float32([0.0, 1.0, -2.0, 0.0, 0.0, inf, 2.0, 3.0, 1.0, nan, -inf, 1e-38, 4.0])
  assert _mismatches(division.divide(a, b), _ieee(a, b)) == 0


def test_exact_divide_on_this_backend_normal_range():
  # On CPU exact_divide uses XLA's IEEE division (which flushes subnormal operands), so
  # the comparison stays in the normal range; elsewhere it is the integer division.
  rng = np.random.default_rng(5)
  a = (rng.standard_normal(1 << 20) * np.exp2(rng.integers(-40, 40, 1 << 20))).astype(np.float32)
  b = (rng.standard_normal(1 << 20) * np.exp2(rng.integers(-40, 40, 1 << 20))).astype(np.float32)
  assert _mismatches(jax.jit(exact_divide)(a, b), _ieee(a, b)) == 0
  # a scalar divisor is where XLA would substitute a reciprocal multiplication
  assert _mismatches(jax.jit(lambda v: exact_divide(v, 2688.0))(a), _ieee(a, 2688.0)) == 0
