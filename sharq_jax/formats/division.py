"""IEEE float32 division, correctly rounded on every backend, from integer operations.

NUMERICS.md requires f32(a / b) rounded to nearest even for every scale and every
scaled value. XLA does not guarantee that: its algebraic simplifier turns divisions by
constants and broadcast scalars into multiplications by a rounded reciprocal (seen on
CPU), and on the H200 XLA's fused kernels divide with an approximate instruction
(1-ulp errors in tensor scales seen on jax 0.11.2). Integer arithmetic is exact on
every backend and no compiler rewrites it, so the quotient is computed here by long
division of the significands:

  a = ma·2^ea, b = mb·2^eb with 24-bit significands (subnormals normalised first);
  ma/mb ∈ [1, 2) after one conditional shift; 28 more quotient bits come from four
  7-bit steps of exact uint32 division ((rem << 7) < 2^31); the bits below the
  result's last place plus a sticky bit (remainder ≠ 0) decide the round to nearest
  even, once, at the final position, normal or subnormal. Specials (NaN, ±Inf, ±0)
  follow IEEE 754.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_U = jnp.uint32
_I = jnp.int32
_STEPS, _STEP_BITS = 4, 7
_QBITS = _STEPS * _STEP_BITS  # fraction bits of the quotient before rounding


def _split(x: jax.Array):
  """|x| (finite, nonzero) → (significand in [2^23, 2^24), unbiased exponent)."""
  bits = jax.lax.bitcast_convert_type(x, _U) & _U(0x7FFFFFFF)
  field = (bits >> 23).astype(_I)
  frac = bits & _U(0x7FFFFF)
  subnormal = field == 0
  # A subnormal's significand is frac itself; shift its leading one up to bit 23.
  shift = jnp.where(subnormal, jax.lax.clz(jnp.maximum(frac, _U(1))).astype(_I) - 8, 0)
  sig = jnp.where(subnormal, frac << shift.astype(_U), frac | _U(0x800000))
  exp = jnp.where(subnormal, -126 - shift, field - 127)
  return sig, exp


def divide(a: jax.Array, b: jax.Array) -> jax.Array:
  """float32 a / b rounded to nearest even (IEEE 754), elementwise with broadcasting."""
  a = jnp.asarray(a, jnp.float32)
  b = jnp.asarray(b, jnp.float32)
  shape = jnp.broadcast_shapes(a.shape, b.shape)
  a = jnp.broadcast_to(a, shape)
  b = jnp.broadcast_to(b, shape)
  ma, ea = _split(a)
  mb, eb = _split(b)
  below = ma < mb  # then the quotient's leading one is one place lower
  rem = jnp.where(below, ma << 1, ma) - mb  # ma/mb ∈ [1, 2): integer part 1
  exp = ea - eb - below.astype(_I)
  q = _U(1)
  for _ in range(_STEPS):
    wide = rem << _STEP_BITS
    q = (q << _STEP_BITS) | (wide // mb)
    rem = wide % mb
  # q = 1.f × 2^28 exactly truncated; the result keeps 23 fraction bits when normal,
  # fewer when subnormal (biased exponent E ≤ 0 drops 1 − E more bits).
  biased = exp + 127
  # Dropping ≥ 30 bits leaves 0 (q < 2^29 is below half the smallest subnormal), so
  # clipping at 31 keeps the shifts defined without changing any result.
  drop = jnp.clip(_QBITS - 23 + jnp.maximum(1 - biased, 0), 0, 31).astype(_U)
  kept = q >> drop
  low = q & ((_U(1) << drop) - _U(1))
  half = _U(1) << (drop - _U(1))
  sticky = rem != 0
  up = (low > half) | ((low == half) & (sticky | ((kept & _U(1)) == 1)))
  kept = kept + up.astype(_U)
  # Normal: bits = (E − 1)·2^23 + kept with kept ∈ [2^23, 2^24] (a carry out of the
  # significand lands in the exponent, as it should); subnormal: bits = kept.
  field = jnp.maximum(biased, 1) - 1
  huge = biased >= 255
  bits = jnp.where(huge, _U(0x7F800000), (field.astype(_U) << 23) + kept)
  bits = jnp.minimum(bits, _U(0x7F800000))  # rounding up past the largest finite
  sign = (jax.lax.bitcast_convert_type(a, _U) ^ jax.lax.bitcast_convert_type(b, _U)) & _U(
      0x80000000)
  out = jax.lax.bitcast_convert_type(bits | sign, jnp.float32)
  # IEEE specials, classified from the bits: XLA on CPU treats subnormal operands
  # as zero in float comparisons (denormals-are-zero), the bits never lie.
  signed = lambda v: jax.lax.bitcast_convert_type(
      jax.lax.bitcast_convert_type(jnp.float32(v), _U) | sign, jnp.float32)
  mag_a = jax.lax.bitcast_convert_type(a, _U) & _U(0x7FFFFFFF)
  mag_b = jax.lax.bitcast_convert_type(b, _U) & _U(0x7FFFFFFF)
  inf = _U(0x7F800000)
  a_zero, b_zero = mag_a == 0, mag_b == 0
  a_inf, b_inf = mag_a == inf, mag_b == inf
  nan = (mag_a > inf) | (mag_b > inf) | (a_zero & b_zero) | (a_inf & b_inf)
  out = jnp.where(a_inf | b_zero, signed(jnp.inf), out)
  out = jnp.where(a_zero | b_inf, signed(0.0), out)
  return jnp.where(nan, jnp.float32(jnp.nan), out)
