"""Numerics shared by the Pallas kernels, written with ops the Triton lowering accepts.

Every function here reproduces a step of docs/NUMERICS.md bit for bit, using only
elementwise float/integer arithmetic and a few PTX sequences (no table lookups, no
fp8/fp4 casts), so that the same code runs in a Pallas-Triton kernel on the GPU and in
interpret mode on the CPU. tests/kernels/test_common.py checks each one against the
core library (sharq_jax.formats) or IEEE division on exhaustive or dense grids, and runs
the PTX sequences in a small interpreter (tests/kernels/ptx_f32.py).

Facts the kernels rely on (checked in the tests, and on the H200 by
benchmarks/bench_prep.py):

* Pallas-Triton lowers `x / y` (float32) to an approximate division on NVIDIA GPUs, so
  every division the numerics contract prescribes is correctly rounded some other way:
  `div_rn` (PTX `div.rn.f32`), or, where the divisor allows it, the shorter sequences
  `div_rn_short` and `div_rn_by_scale`. In interpret mode they all use the core
  library's exact integer division (sharq_jax.formats.division).
* Triton's float `max` ignores NaN (it lowers to maxnum), unlike XLA's: kernels never
  feed NaN to a max; non-finite values are flagged separately.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from sharq_jax.formats import division

E4M3_MAX = 448.0
E4M3_MIN_SUBNORMAL = 2.0**-9
E2M1_MAX = 6.0
TENSOR_SCALE_DIVISOR = 448.0 * 6.0

# 1.5 · 2^(23 + e): adding and subtracting it rounds a float32 |v| < 2^(21 + e) to the
# nearest multiple of 2^e, ties to even (the float32 add itself does the rounding).
_MAGIC_HALF = np.float32(1.5 * 2.0**22)  # grid 0.5
_MAGIC_ONE = np.float32(1.5 * 2.0**23)  # grid 1
_MAGIC_TWO = np.float32(1.5 * 2.0**24)  # grid 2

# fp16 scaling conventions of the GEMM operands (exact, see decode_nibbles_f16).
NIBBLE_F16_EXPONENT = -14  # decoded nibble = E2M1 value · 2^-14
SCALE_F16_EXPONENT = 7  # decoded block scale = E4M3 value · 2^7
WEIGHT_F16_EXPONENT = NIBBLE_F16_EXPONENT + SCALE_F16_EXPONENT  # Ŵ' · 2^-7


def div_rn(x: jax.Array, y: jax.Array, *, gpu: bool) -> jax.Array:
  """float32 x / y rounded to nearest even (IEEE), also inside Pallas-Triton kernels."""
  x = jnp.asarray(x, jnp.float32)
  y = jnp.asarray(y, jnp.float32)
  shape = jnp.broadcast_shapes(x.shape, y.shape)
  x = jnp.broadcast_to(x, shape)
  y = jnp.broadcast_to(y, shape)
  if not gpu:
    # Outside a kernel (interpret mode, XLA): XLA's division is not correctly rounded
    # everywhere; the core library's integer long division is.
    return division.divide(x, y)
  from jax.experimental.pallas import triton as plgpu  # pylint: disable=g-import-not-at-top
  [out] = plgpu.elementwise_inline_asm(
      "div.rn.f32 $0, $1, $2;", args=[x, y], constraints="=f,f,f", pack=1,
      result_shape_dtypes=[jax.ShapeDtypeStruct(shape, jnp.float32)])
  return out


def _asm_f32(asm: str, *args: jax.Array) -> jax.Array:
  """One float32 result of PTX `asm` over float32 operands $1.. (elementwise)."""
  from jax.experimental.pallas import triton as plgpu  # pylint: disable=g-import-not-at-top
  shape = jnp.broadcast_shapes(*(a.shape for a in args))
  args = [jnp.broadcast_to(jnp.asarray(a, jnp.float32), shape) for a in args]
  [out] = plgpu.elementwise_inline_asm(
      asm, args=args, constraints="=f" + ",f" * len(args), pack=1,
      result_shape_dtypes=[jax.ShapeDtypeStruct(shape, jnp.float32)])
  return out


def _f32_imm(v: float) -> str:
  """A PTX float32 immediate (0fXXXXXXXX)."""
  return f"0f{int(np.float32(v).view(np.uint32)):08X}"


def div_short_asm(abs_cap: float | None = None) -> str:
  """PTX of div_rn_short: $0 = RN($1 / $2) from $3 = RN(1 / $2) (or min(|·|, abs_cap))."""
  tail = ("fma.rn.f32 $0, r, $3, q;" if abs_cap is None else
          f"fma.rn.f32 q, r, $3, q;\n      abs.f32 q, q;\n"
          f"      min.f32 $0, q, {_f32_imm(abs_cap)};")
  return f"""
      {{
      .reg .f32 q, r;
      mul.rn.f32 q, $1, $3;
      neg.f32 r, q;
      fma.rn.f32 r, r, $2, $1;
      {tail}
      }}"""


# $0 = RN(1 / $1) for a short $1: rcp.approx, then one correction step (rcp_rn_short).
RCP_SHORT_ASM = """
      {
      .reg .f32 z, r;
      rcp.approx.ftz.f32 z, $1;
      neg.f32 r, z;
      fma.rn.f32 r, r, $1, 0f3F800000;
      fma.rn.f32 $0, r, z, z;
      }"""

# $0 = the reciprocal div.rn.f32's fast path computes for $1 (MUFU.RCP and one Newton
# step, as ptxas emits them for div.rn), hoisted by div_rn_by_scale.
RCP_REFINED_ASM = """
      {
      .reg .f32 z, e;
      rcp.approx.ftz.f32 z, $1;
      neg.f32 e, $1;
      fma.rn.f32 e, e, z, 0f3F800000;
      fma.rn.f32 $0, z, e, z;
      }"""

# $0 = $1 / $2 from $3 = RCP_REFINED_ASM($2): the rest of div.rn.f32's fast path,
# with the remainder's sign flipped twice (t = q·s − x, then q − t·z): the same
# values, but x = ±0 gives ±0 (x − q·s would give +0 for -0). ptxas folds both neg.f32
# into the FMAs' operand modifiers: 3 instructions.
DIV_BY_SCALE_ASM = """
      {
      .reg .f32 q, t, nx;
      mul.rn.f32 q, $1, $3;
      neg.f32 nx, $1;
      fma.rn.f32 t, q, $2, nx;
      neg.f32 t, t;
      fma.rn.f32 $0, t, $3, q;
      }"""


def div_rn_short(x: jax.Array, y: jax.Array, y_rcp: jax.Array, *, gpu: bool,
                 abs_cap: float | None = None) -> jax.Array:
  """float32 x / y rounded to nearest even, for a divisor y > 0 whose significand has at
  most 22 bits (E4M3 scales have 4, 6 has 2), given y_rcp = RN(1/y); 3 instructions on
  the GPU against div.rn's ~10 (the block quantizers divide every element by such a y).

  GPU (div_short_asm): q = RN(x·y_rcp); r = x − q·y (one FMA, exact); RN(q + r·y_rcp).
  Why exact: with Q = x/y, q + r·y_rcp = Q + (Q − q)(y·y_rcp − 1); |Q − q| ≤ 3·2^(e−24)
  and |y·y_rcp − 1| ≤ 2^-24 (e: Q's exponent) put it within 3·2^(e−48) of Q, while a
  b-bit y keeps Q at least 2^(e−24−b) from every rounding midpoint (x − μ·y is a nonzero
  multiple of μ's and y's last places), so no midpoint lies between them for b ≤ 22;
  the same bounds make r a 24-bit number. Preconditions: y and y_rcp normal and
  |x| ≥ 2^-100 or x = ±0 (smaller x may give a result a few ulps off; the quantizers
  round all such quotients to 0 anyway); a zero x gives +0 (the sign is the caller's).
  abs_cap: return min(|x / y|, abs_cap) instead, in the same instruction group.
  On the CPU (interpret mode): the exact integer division, with the same +0.
  """
  x = jnp.asarray(x, jnp.float32)
  if not gpu:
    q = division.divide(x, jnp.asarray(y, jnp.float32))
    q = jnp.where(x == 0, np.float32(0.0), q)
    return q if abs_cap is None else jnp.minimum(jnp.abs(q), np.float32(abs_cap))
  return _asm_f32(div_short_asm(abs_cap), x, y, y_rcp)


def rcp_rn_short(y: jax.Array, *, gpu: bool) -> jax.Array:
  """RN(1/y) for y > 0 with at most 20 significant bits, y and 1/y normal (E4M3 scales
  are).

  GPU (RCP_SHORT_ASM): z = rcp.approx(y) (≤ 1 ulp off), then one correction step as in
  div_rn_short with x = 1 (q = z): within 2^-46 of 1/y relatively, while a short y keeps
  1/y at least 2^(−24−b) from every midpoint, so the rounding is exact. CPU: the integer
  division.
  """
  y = jnp.asarray(y, jnp.float32)
  if not gpu:
    return division.divide(jnp.ones_like(y), y)
  return _asm_f32(RCP_SHORT_ASM, y)


# Tensor scales for which div_rn_by_scale runs the 3-instruction path (else div.rn).
FAST_SCALE_RANGE = (2.0**-60, 2.0**60)
# Quotients at least this large are exact on that path; smaller ones may be a few ulps
# off (their remainder can underflow) but stay below it.
FAST_SCALE_EXACT_FROM = 2.0**-12


def div_rn_by_scale(x: jax.Array, s: jax.Array, *, gpu: bool) -> jax.Array:
  """x / s for one float32 tensor scale s (shape (1, 1) or (), broadcast over x),
  rounded to nearest even for finite x with FAST_SCALE_EXACT_FROM ≤ |x / s| ≤ 2^100 and
  for x = ±0: every quotient the NVFP4 quantizers can tell apart (each d_b ≥ 2^-9, so
  anything below 2^-11 becomes 0; a scale from the tensor's own amax keeps
  |x / s| ≤ 2688). Smaller quotients keep x's sign and stay below 2^-11 (the
  remainder's rounding error is < 2^-149 / s), so they quantize to ±0 all the same;
  but being a few ulps off, they may reorder tiny pair scores, and the mask then keeps
  another of several such pairs than the contract, which can flip a zero output's
  sign (x below ~2^-100 only). Non-finite x may give NaN where
  x / s is ±Inf (both make their block NaN).

  GPU, s in FAST_SCALE_RANGE: the instructions of div.rn.f32's own fast path, with its
  reciprocal step done once per program instead of once per element (RCP_REFINED_ASM),
  then per element q = RN(x·z), t = q·s − x (exact), RN(q − t·z) (DIV_BY_SCALE_ASM; 3
  instead of ~10 instructions, no branch; the same values as div.rn's x − q·s, with
  x = ±0 giving ±0). That path is correctly rounded whenever
  no operand or intermediate is near the subnormal or overflow range: for
  |x/s| ≥ 2^-12 and s in range, x ≥ 2^-72 and the remainder cannot underflow. Checked
  on the H200 against div.rn.f32 (benchmarks/bench_prep.py). Out-of-range s (a uniform
  branch): div.rn. CPU: the exact integer division.
  """
  if not gpu:
    return div_rn(x, s, gpu=False)
  x = jnp.asarray(x, jnp.float32)
  s = jnp.asarray(s, jnp.float32)
  s_rcp = _asm_f32(RCP_REFINED_ASM, s)
  lo, hi = FAST_SCALE_RANGE
  in_range = ((s >= np.float32(lo)) & (s <= np.float32(hi))).reshape(())
  return jax.lax.cond(in_range, lambda: _asm_f32(DIV_BY_SCALE_ASM, x, s, s_rcp),
                      lambda: div_rn(x, s, gpu=True))


def rcp_refined(s: jax.Array) -> jax.Array:
  """The reciprocal div_rn_by_scale hoists (GPU only; for the H200 checks)."""
  return _asm_f32(RCP_REFINED_ASM, jnp.asarray(s, jnp.float32))


_RCP_SIX = np.float32(1.0) / np.float32(6.0)  # RN(1/6): NumPy divides correctly


def _bits(x: jax.Array) -> jax.Array:
  return jax.lax.bitcast_convert_type(x.astype(jnp.float32), jnp.uint32)


def _from_bits(b: jax.Array) -> jax.Array:
  return jax.lax.bitcast_convert_type(b.astype(jnp.uint32), jnp.float32)


def e4m3_round_nonneg(r: jax.Array) -> jax.Array:
  """Rounds finite 0 <= r <= 448 onto the float8_e4m3fn grid (RNE), as float32.

  The grid step is 2^(e-3) for r in [2^e, 2^(e+1)), e >= -6, and 2^-9 below 2^-6
  (subnormals); adding 1.5·2^(23)·step rounds to a multiple of the step.
  """
  r = r.astype(jnp.float32)
  biased_exp = (_bits(r) >> 23).astype(jnp.int32)
  step_exp = jnp.maximum(biased_exp, 127 - 6) - 3  # biased exponent of the grid step
  magic = _from_bits(((step_exp + 23) << 23).astype(jnp.uint32) | np.uint32(0x400000))
  return (r + magic) - magic


def nvfp4_block_scale(amax: jax.Array, *, gpu: bool) -> jax.Array:
  """NVFP4 block scale d_b (float32) for a finite block amax with tensor scale 1.

  d_b = e4m3(min(amax / 6, 448)); 2^-9 when amax > 0 rounds to 0 (NUMERICS.md). The
  division by 6 is div_rn_short's (6 has 2 significant bits); for amax < 2^-100 it may
  be a few ulps off, but such ratios round to 0 (then 2^-9) either way.
  """
  amax = jnp.asarray(amax, jnp.float32)
  six = jnp.full_like(amax, E2M1_MAX)
  ratio = jnp.minimum(div_rn_short(amax, six, jnp.full_like(amax, _RCP_SIX), gpu=gpu),
                      E4M3_MAX)
  d = e4m3_round_nonneg(ratio)
  return jnp.where((amax > 0) & (d == 0), np.float32(E4M3_MIN_SUBNORMAL), d)


def e2m1_round_nonneg(a: jax.Array, *, capped: bool = False) -> jax.Array:
  """Rounds float32 a ≥ 0 onto the E2M1 magnitudes (RNE, saturating at 6), as float32.

  The grid step is 0.5 below 2, 1 on [2, 4) and 2 on [4, 6]: adding and subtracting
  1.5·2^(22 + max(e, 0)) (e: a's exponent) rounds to it, ties to the even multiple,
  which is the even E2M1 code: integer exponent arithmetic, no compares and
  selects. capped: the caller guarantees a ≤ 6 (skips the min).
  """
  a = a.astype(jnp.float32)
  if not capped:
    a = jnp.minimum(a, E2M1_MAX)
  biased_exp = jnp.maximum(_bits(a) >> 23, np.uint32(127))
  magic = _from_bits(biased_exp * np.uint32(1 << 23) + np.uint32((22 << 23) | 0x400000))
  return (a + magic) - magic


def e2m1_nibble(v: jax.Array) -> jax.Array:
  """4-bit E2M1 code (uint8, bit 3 = sign) of a float32 value already on the grid."""
  v = v.astype(jnp.float32)
  a = jnp.abs(v)
  idx = jnp.where(a >= 4.0, 6.0 + (a - 4.0) * 0.5,
                  jnp.where(a >= 2.0, 4.0 + (a - 2.0), a * 2.0))
  sign = (_bits(v) >> 31).astype(jnp.uint8)
  return (sign << 3) | idx.astype(jnp.uint8)


def decode_nibbles_f16(packed: jax.Array, *, gpu: bool, use_asm: bool = True):
  """Packed E2M1 bytes (uint8, low nibble = even K) -> (low, high) float16 · 2^-14.

  Pure bit moves: the nibble's sign goes to bit 15 and its three magnitude bits to
  bits 11..9 of a float16, which is then the E2M1 value times 2^-14 exactly (zero and
  the 0.5 subnormal included). On the GPU `use_asm` decodes four bytes per PTX
  instruction group (two `prmt` byte spreads, then shifts and masks on packed halves).
  """
  if gpu and use_asm:
    from jax.experimental.pallas import triton as plgpu  # pylint: disable=g-import-not-at-top
    # One asm per nibble plane (the Pallas lowering takes one result per asm). $2 holds
    # four input bytes; prmt spreads bytes (0,1) and (2,3) into 16-bit halves, then one
    # shift-and-mask pair per field builds two float16s per 32-bit register.
    def plane(sign_shift, mag_shift):
      asm = f"""
      {{
      .reg .b32 t01, t23, a, b;
      prmt.b32 t01, $2, 0, 0x4140;
      prmt.b32 t23, $2, 0, 0x4342;
      shl.b32 a, t01, {sign_shift};
      shl.b32 b, t01, {mag_shift};
      and.b32 a, a, 0x80008000;
      and.b32 b, b, 0x0E000E00;
      or.b32 $0, a, b;
      shl.b32 a, t23, {sign_shift};
      shl.b32 b, t23, {mag_shift};
      and.b32 a, a, 0x80008000;
      and.b32 b, b, 0x0E000E00;
      or.b32 $1, a, b;
      }}
      """
      [out] = plgpu.elementwise_inline_asm(
          asm, args=[packed], constraints="=r,=r,r", pack=4,
          result_shape_dtypes=[jax.ShapeDtypeStruct(packed.shape, jnp.float16)])
      return out
    return plane(12, 9), plane(8, 5)
  b = packed.astype(jnp.uint16)
  lo = ((b & 0x8) << 12) | ((b & 0x7) << 9)
  hi = ((b & 0x80) << 8) | ((b & 0x70) << 5)
  return (jax.lax.bitcast_convert_type(lo, jnp.float16),
          jax.lax.bitcast_convert_type(hi, jnp.float16))


def decode_e4m3_scale_f16(scale_bits: jax.Array) -> jax.Array:
  """E4M3 scale bytes (uint8) -> float16 scale · 2^7 (NaN code -> NaN).

  Shifting an E4M3 byte left by 7 gives a float16 equal to its value times 2^-8
  (normals and subnormals alike); times 2^15 this is the value · 2^7, exact, at most
  448·128 = 57344 < 65504.
  """
  b = scale_bits.astype(jnp.uint16)
  v = jax.lax.bitcast_convert_type((b & 0x7F) << 7, jnp.float16) * jnp.float16(32768.0)
  return jnp.where((b & 0x7F) == 0x7F, jnp.float16(jnp.nan), v)


def decode_e4m3_scale_f32(scale_bits: jax.Array) -> jax.Array:
  """E4M3 scale bytes (uint8) -> float32 value (NaN code -> NaN)."""
  return decode_e4m3_scale_f16(scale_bits).astype(jnp.float32) * np.float32(2.0**-7)


def bytes_to_words(codes: jax.Array) -> jax.Array:
  """uint8 (..., 4n) -> uint32 (..., n), little-endian (byte 4i is the low byte of word
  i): the same memory seen as 32-bit words (an XLA bitcast outside the kernels)."""
  *lead, last = codes.shape
  return jax.lax.bitcast_convert_type(codes.reshape(*lead, last // 4, 4), jnp.uint32)


def words_to_bytes(words: jax.Array) -> jax.Array:
  """uint32 (..., n) -> uint8 (..., 4n): the inverse of bytes_to_words, by shifts and
  masks (a kernel can do this where it cannot bitcast between widths)."""
  shifts = jax.lax.broadcasted_iota(jnp.uint32, words.shape + (4,), words.ndim) * 8
  b = (words[..., None] >> shifts) & np.uint32(0xFF)
  return b.astype(jnp.uint8).reshape(*words.shape[:-1], words.shape[-1] * 4)


def stream_queues(n_iter: int, streams, multiply, init, *, after_loads=None):
  """fori_loop over n_iter K steps of a weight-streaming kernel, each stream's loads
  issued `depth` steps ahead of the arithmetic that uses them.

  streams: (load, depth) pairs; multiply(it, loaded_0, ..., loaded_{s-1}, acc) -> acc
  gets load_s(it)'s result for every stream. Triton does not software-pipeline loads
  that feed no dot, so carrying loaded steps in the loop is the only way a program keeps
  several steps of HBM reads in flight; streams get their own depths because their
  register costs differ (a queued step of code words is a few registers, one of float16
  activations many).

  depth 0 loads at the step. A stream of depth d >= 1 keeps a ring of d loaded steps in
  the loop carry. The loop body is unrolled lcm(depths) times, so the step in ring slot
  j of a stream is always ≡ j (mod its depth) and no carried value is copied between
  slots (a copy would wait for its load to land); the steps left after the loop run in
  a peeled tail, which still loads ahead for the shallower rings. Depths are capped at
  n_iter; loads past the last step inside the loop are clamped to it (cache hits,
  results unused), and a slot whose loads would be past the last step in every
  iteration loads nothing.

  after_loads: called (no arguments) after the ring's first loads and after every
  step's loads, in program order. ptxas schedules a load next to its first use when
  nothing stops it (kernels/NOTES.md v13: in straight-line code every step waited a
  full HBM round trip), so the GPU kernels pass a CTA barrier here, which no load
  crosses.
  """
  depths = [min(max(int(d), 0), n_iter) for _, d in streams]
  unroll = math.lcm(*[d for d in depths if d] or [1])
  last = n_iter - 1

  def step(it, j, rings, acc, *, clamp):
    loaded, issued = [], False
    for s, ((load, _), d) in enumerate(zip(streams, depths)):
      if not d:
        loaded.append(load(it))
        continue
      loaded.append(rings[s][j % d])
      if clamp and j + d <= last:  # inside the loop (it traced); some iteration needs it
        rings[s][j % d] = load(jnp.minimum(it + d, last))  # issued before the arithmetic
        issued = True
      elif not clamp and it + d <= last:  # the tail: it is a Python int
        rings[s][j % d] = load(it + d)
        issued = True
    if issued and after_loads is not None:
      after_loads()
    return multiply(it, *loaded, acc)

  def body(i, carry):
    rings, acc = carry
    rings = [list(r) for r in rings]
    for j in range(unroll):
      acc = step(i * unroll + j if unroll > 1 else i, j, rings, acc, clamp=True)
    return tuple(tuple(r) for r in rings), acc

  rings = tuple(tuple(load(q) for q in range(d)) for (load, _), d in zip(streams, depths))
  if any(depths) and after_loads is not None:
    after_loads()
  full = n_iter // unroll
  rings, acc = jax.lax.fori_loop(0, full, body, (rings, init))
  rings = [list(r) for r in rings]
  for j in range(n_iter % unroll):
    acc = step(full * unroll + j, j, rings, acc, clamp=False)
  return acc
