"""Independent numpy reference of the SharQ numerics (DESIGN.md §1-§2, docs/NUMERICS.md).

Written from the specification only; nothing here imports or mirrors ``sharq_jax``.

Conventions
-----------
* Arithmetic is done in float64.  Every place where docs/NUMERICS.md writes ``f32(.)``
  the float64 result of ONE basic operation (+, -, *, /) on float32-representable
  operands is cast with ``np.float32``.  Because float64 has more than 2*24+2 significand
  bits, rounding the exact-in-float64-then-to-float32 result equals the IEEE float32
  operation (double rounding is innocuous for a single basic operation).
* Element / scale rounding (E2M1, S1P2, E4M3, E6M2) is a nearest-value search over value
  tables built from each format's bit layout, ties to the even code.  No ml_dtypes casts.
* Blocks run along the last axis.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, List, Optional, Tuple

import numpy as np

F32 = np.float32
F64 = np.float64


def div_const(a, c: float):
  """f32(a / c): true division by a constant, one rounding (NUMERICS.md)."""
  return f32(np.asarray(a, F64) / c)


def div_bcast(a, d):
  """f32(a / d) where d is a per-block divisor broadcast over the block."""
  return f32(np.asarray(a, F64) / d)


def f32(x):
  """One IEEE round-to-nearest-even to float32, returned as float64 (so later math is
  done in float64 again)."""
  return np.asarray(x, dtype=F64).astype(F32).astype(F64)


# ---------------------------------------------------------------------------
# Value tables from bit layouts
# ---------------------------------------------------------------------------

def e2m1_decode(code: int) -> float:
  """4-bit E2M1: bit3 sign, bits2-1 exponent (bias 1), bit0 mantissa. No inf/nan."""
  sign = -1.0 if (code >> 3) & 1 else 1.0
  e = (code >> 1) & 3
  m = code & 1
  if e == 0:
    mag = m * 0.5  # subnormal: 2^(1-1) * m/2
  else:
    mag = 2.0 ** (e - 1) * (1.0 + m / 2.0)
  return sign * mag


def e4m3fn_decode(code: int) -> float:
  """8-bit E4M3 'fn': bit7 sign, bits6-3 exponent (bias 7), bits2-0 mantissa.
  No inf; S.1111.111 is NaN; exponent 0 is subnormal."""
  sign = -1.0 if (code >> 7) & 1 else 1.0
  e = (code >> 3) & 0xF
  m = code & 7
  if e == 0xF and m == 7:
    return float("nan")
  if e == 0:
    mag = (m / 8.0) * 2.0 ** (-6)
  else:
    mag = (1.0 + m / 8.0) * 2.0 ** (e - 7)
  return sign * mag


def e8m0_decode(code: int) -> float:
  """8-bit E8M0 'fnu': unsigned exponent only, bias 127, 0xFF NaN, no zero."""
  if code == 0xFF:
    return float("nan")
  return 2.0 ** (code - 127)


def e6m2_decode(code: int) -> float:
  """HiF4 level-1 scale: code = (e+48)<<2 | mant, value 2^e (1 + mant/4); code 255 NaN."""
  if code == 0xFF:
    return float("nan")
  e = (code >> 2) - 48
  m = code & 3
  return 2.0 ** e * (1.0 + m / 4.0)


E2M1_CODES = np.arange(16)
E2M1_VALUES = np.array([e2m1_decode(c) for c in range(16)], dtype=F64)
E4M3_VALUES = np.array([e4m3fn_decode(c) for c in range(256)], dtype=F64)
E8M0_VALUES = np.array([e8m0_decode(c) for c in range(256)], dtype=F64)
E6M2_VALUES = np.array([e6m2_decode(c) for c in range(256)], dtype=F64)

# Non-negative magnitudes, indexed by code (monotone increasing in the code).
_E2M1_POS = E2M1_VALUES[:8]                 # 0, .5, 1, 1.5, 2, 3, 4, 6
_E4M3_POS = E4M3_VALUES[:127]               # 0 .. 448 (code 127 is NaN)
_S1P2_POS = np.arange(8, dtype=F64) / 4.0   # 0, .25, ..., 1.75
_E6M2_POS = E6M2_VALUES[:255]               # 2^-48 .. 2^15 * 1.5 (code 255 = 2^15*1.75 is NaN)

E2M1_MAX = 6.0
E4M3_MAX = 448.0


def _round_to_table(mag: np.ndarray, table: np.ndarray) -> np.ndarray:
  """Nearest entry of ``table`` (ascending, table[i] has code i) to ``mag``; of two equally
  near entries the one with the even code wins.  ``mag`` must lie in
  [table[0], table[-1]].  Returns the code index."""
  mag = np.asarray(mag, dtype=F64)
  idx = np.searchsorted(table, mag, side="left")  # table[idx-1] < mag <= table[idx]
  idx = np.clip(idx, 0, len(table) - 1)
  exact = table[idx] == mag
  lo_i = np.clip(idx - 1, 0, len(table) - 1)
  lo = table[lo_i]
  hi = table[idx]
  mid = (lo + hi) / 2.0  # exact in float64 for all our tables
  pick_hi = np.where(mag > mid, True, np.where(mag < mid, False, (idx % 2) == 0))
  code = np.where(exact, idx, np.where(pick_hi, idx, lo_i))
  return code.astype(np.int64)


# ---------------------------------------------------------------------------
# Elements
# ---------------------------------------------------------------------------

def e2m1_code_mag(a: np.ndarray) -> np.ndarray:
  """Magnitude code (0..7) of E2M1 rounding of |a| (saturating at 6)."""
  mag = np.minimum(np.abs(np.asarray(a, F64)), E2M1_MAX)
  return _round_to_table(mag, _E2M1_POS)


def e2m1_round(a: np.ndarray) -> np.ndarray:
  """E2M1 RNE (ties to even code), saturating at ±6, sign kept. Finite inputs only;
  NaN stays NaN here (the reference never lets NaN reach a code)."""
  a = np.asarray(a, F64)
  nan = np.isnan(a)
  a0 = np.where(nan, 0.0, a)
  v = _E2M1_POS[e2m1_code_mag(a0)]
  out = np.copysign(v, a0)
  return np.where(nan, np.nan, out)


def s1p2_round(a: np.ndarray) -> np.ndarray:
  """HiF4 element: sign + k/4, k in 0..7, ties to even k, saturating at 1.75."""
  a = np.asarray(a, F64)
  nan = np.isnan(a)
  a0 = np.where(nan, 0.0, a)
  mag = np.minimum(np.abs(a0), 1.75)
  v = _S1P2_POS[_round_to_table(mag, _S1P2_POS)]
  return np.where(nan, np.nan, np.copysign(v, a0))


def e4m3_round(v: np.ndarray) -> np.ndarray:
  """RNE to float8_e4m3fn for finite inputs with |v| <= 448 (callers clip first).
  Subnormals (multiples of 2^-9) included; values below 2^-10 round to 0 (2^-10 is a tie
  between 0 (code 0) and 2^-9 (code 1) -> 0)."""
  v = np.asarray(v, F64)
  nan = np.isnan(v)
  v0 = np.where(nan, 0.0, v)
  mag = np.abs(v0)
  if np.any(mag > E4M3_MAX):
    raise ValueError("e4m3_round: magnitude above 448; clip first")
  out = np.copysign(_E4M3_POS[_round_to_table(mag, _E4M3_POS)], v0)
  return np.where(nan, np.nan, out)


def e6m2_round(v: np.ndarray) -> np.ndarray:
  """HiF4 level-1 scale rounding (unsigned, no zero): below 2^-48 -> 2^-48, above the
  largest finite (2^15*1.5) -> 2^15*1.5; otherwise mantissa RNE to 2 bits with carry.
  Implemented as nearest search over the finite E6M2 codes 0..254 with ties to even code
  (code 255, whose bit pattern would mean 2^15*1.75, is NaN per DESIGN §2.4)."""
  v = np.asarray(v, F64)
  finite_tab = _E6M2_POS
  # DESIGN: "the top code (2^15*1.75) is NaN, so the largest finite scale is 2^15*1.5".
  # A value whose RNE would be 2^15*1.75 or 2^16 therefore saturates at 2^15*1.5.
  lo, hi = finite_tab[0], finite_tab[-1]
  vc = np.clip(v, lo, hi)
  return finite_tab[_round_to_table(vc, finite_tab)]


def e6m2_round_rne_then_saturate(v: np.ndarray) -> np.ndarray:
  """Alternative literal reading of NUMERICS.md: RNE against the full code range first
  (including the 2^15*1.75 and 2^16 carry), then saturate to 2^15*1.5."""
  v = np.asarray(v, F64)
  tab = np.concatenate([_E6M2_POS, [2.0 ** 15 * 1.75, 2.0 ** 16]])
  vc = np.clip(v, tab[0], tab[-1])
  r = tab[_round_to_table(vc, tab)]
  return np.minimum(r, 2.0 ** 15 * 1.5)


def e6m2_code(v: np.ndarray) -> np.ndarray:
  """Code of an (already rounded) E6M2 value."""
  return np.searchsorted(_E6M2_POS, np.asarray(v, F64)).astype(np.int64)


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

def _blocks(x: np.ndarray, b: int) -> np.ndarray:
  k = x.shape[-1]
  if k % b:
    raise ValueError(f"K={k} not a multiple of block {b}")
  return x.reshape(x.shape[:-1] + (k // b, b))


def _unblocks(xb: np.ndarray) -> np.ndarray:
  return xb.reshape(xb.shape[:-2] + (xb.shape[-2] * xb.shape[-1],))


def finite_amax(x: np.ndarray, axis=None, keepdims=False) -> np.ndarray:
  x = np.asarray(x, F64)
  return np.max(np.where(np.isfinite(x), np.abs(x), 0.0), axis=axis, keepdims=keepdims)


def tensor_scale_nvfp4(x: np.ndarray, granularity: str = "tensor") -> np.ndarray:
  """s = f32(amax_finite / 2688); 1 where amax == 0.  granularity 'tensor' or 'row'."""
  x = np.asarray(x, F64)
  if granularity == "tensor":
    amax = finite_amax(x)
  elif granularity == "row":
    amax = finite_amax(x, axis=-1, keepdims=True)
  else:
    raise ValueError(granularity)
  s = div_const(amax, 2688.0)
  return np.where(amax == 0, 1.0, s)


# ---------------------------------------------------------------------------
# NVFP4
# ---------------------------------------------------------------------------

@dataclasses.dataclass
class NVFP4Result:
  codes: np.ndarray        # E2M1 values (float64, on the grid), shape of x
  block_scale: np.ndarray  # d_b, shape (..., K//B) (NaN for poisoned blocks)
  tensor_scale: np.ndarray  # s, scalar or (..., 1)
  deq: np.ndarray          # f32(code * d_b * s)
  deq_unscaled: np.ndarray  # code * d_b (exact), i.e. the X' domain value


def nvfp4_quantize(x, block_size: int = 16, granularity: str = "tensor",
                   tensor_scale: Optional[float] = None) -> NVFP4Result:
  x = f32(x)
  if tensor_scale is not None:
    s = f32(np.asarray(tensor_scale, F64))
  else:
    s = tensor_scale_nvfp4(x, granularity)
  s = np.asarray(s, F64)
  xb = _blocks(x, block_size)
  bad = ~np.all(np.isfinite(xb), axis=-1)           # block contains NaN/Inf
  amax_b = finite_amax(xb, axis=-1)                 # (..., nb)
  sb = s                                            # () or (..., 1): broadcasts over (..., nb)
  six_s = f32(6.0 * sb)
  ratio = np.minimum(div_bcast(amax_b, six_s), E4M3_MAX)
  d = e4m3_round(ratio)
  d = np.where((amax_b > 0) & (d == 0), 2.0 ** -9, d)
  d = np.where(amax_b == 0, 0.0, d)
  d = np.where(bad, np.nan, d)
  denom = f32(d * sb)[..., None]                    # f32(d_b * s)
  safe = np.where((denom == 0) | ~np.isfinite(denom), 1.0, denom)
  q = div_bcast(np.where(np.isfinite(xb), xb, 0.0), safe)
  codes = e2m1_round(q)
  codes = np.where((amax_b == 0)[..., None], 0.0, codes)
  codes = np.where(bad[..., None], np.nan, codes)
  unscaled = codes * d[..., None]                   # exact
  sbb = sb[..., None] if np.ndim(sb) else sb
  deq = f32(unscaled * sbb)
  return NVFP4Result(_unblocks(codes), d, s, _unblocks(deq), _unblocks(unscaled))


def nvfp4_qdq(x, block_size=16, granularity="tensor", tensor_scale=None) -> np.ndarray:
  return nvfp4_quantize(x, block_size, granularity, tensor_scale).deq


# ---------------------------------------------------------------------------
# MXFP4
# ---------------------------------------------------------------------------

@dataclasses.dataclass
class MXFP4Result:
  codes: np.ndarray
  exponent: np.ndarray  # e_b (int, float64 array), (..., K//B)
  deq: np.ndarray


def _floor_log2(v):
  """floor(log2(v)) exactly for v > 0 (float64 input)."""
  m, e = np.frexp(v)  # v = m 2^e, 0.5 <= m < 1
  return e - 1


def _ceil_log2(v):
  m, e = np.frexp(v)
  return np.where(m == 0.5, e - 1, e)


def mxfp4_quantize(x, block_size: int = 32, rounding: str = "floor") -> MXFP4Result:
  x = f32(x)
  xb = _blocks(x, block_size)
  bad = ~np.all(np.isfinite(xb), axis=-1)
  amax = finite_amax(xb, axis=-1)
  pos = amax > 0
  safe = np.where(pos, amax, 1.0)
  if rounding == "floor":
    e = _floor_log2(safe) - 2
  elif rounding == "ceil":
    e = _ceil_log2(div_const(safe, 6.0))
  else:
    raise ValueError(rounding)
  e = np.clip(e, -127, 127)
  e = np.where(pos, e, -127).astype(np.int64)
  scale = np.ldexp(1.0, e)[..., None]
  q = np.where(np.isfinite(xb), xb, 0.0) / scale   # exact (power of two, float64)
  codes = e2m1_round(q)
  codes = np.where(bad[..., None], np.nan, codes)
  deq = f32(codes * scale)  # exact unless below float32 normal range
  return MXFP4Result(_unblocks(codes), e.astype(F64), _unblocks(deq))


def mxfp4_qdq(x, block_size=32, rounding="floor") -> np.ndarray:
  return mxfp4_quantize(x, block_size, rounding).deq


# ---------------------------------------------------------------------------
# HiF4
# ---------------------------------------------------------------------------

@dataclasses.dataclass
class HiF4Result:
  codes: np.ndarray   # S1P2 values (k/4 with sign)
  e6m2: np.ndarray    # (..., K//64)
  e8: np.ndarray      # (..., K//64, 8)
  e4: np.ndarray      # (..., K//64, 16)
  deq: np.ndarray
  meta: np.ndarray    # uint32 metadata word per unit


def hif4_quantize(x, unit: int = 64, e6m2_fn: Callable = e6m2_round) -> HiF4Result:
  if unit != 64:
    raise ValueError("HiF4 unit is 64")
  x = f32(x)
  xb = _blocks(x, 64)                                       # (..., nu, 64)
  bad = ~np.all(np.isfinite(xb), axis=-1)
  ax = np.where(np.isfinite(xb), np.abs(xb), 0.0)
  v16 = ax.reshape(ax.shape[:-1] + (16, 4)).max(-1)         # (..., nu, 16)
  v8 = ax.reshape(ax.shape[:-1] + (8, 8)).max(-1)           # (..., nu, 8)
  vmax = ax.max(-1)                                          # (..., nu)
  E = e6m2_fn(div_const(vmax, 7.0))
  e8 = (v8 >= 4.0 * E[..., None]).astype(np.int64)
  e8_per16 = np.repeat(e8, 2, axis=-1)                       # (..., nu, 16)
  e4 = (v16 >= 2.0 * E[..., None] * np.ldexp(1.0, e8_per16)).astype(np.int64)
  scale16 = E[..., None] * np.ldexp(1.0, e8_per16 + e4)      # exact
  scale = np.repeat(scale16, 4, axis=-1)                     # (..., nu, 64)
  q = div_bcast(np.where(np.isfinite(xb), xb, 0.0), scale)
  codes = s1p2_round(q)
  codes = np.where(bad[..., None], np.nan, codes)
  deq = f32(codes * scale)
  ecode = e6m2_code(E).astype(np.uint64)
  bits8 = (e8.astype(np.uint64) << np.arange(8, dtype=np.uint64)).sum(-1)
  bits4 = (e4.astype(np.uint64) << np.arange(16, dtype=np.uint64)).sum(-1)
  meta = (ecode | (bits8 << np.uint64(8)) | (bits4 << np.uint64(16))).astype(np.uint32)
  return HiF4Result(_unblocks(codes), E, e8, e4, _unblocks(deq), meta)


def hif4_qdq(x, e6m2_fn: Callable = e6m2_round) -> np.ndarray:
  return hif4_quantize(x, 64, e6m2_fn).deq


# ---------------------------------------------------------------------------
# N:M masks
# ---------------------------------------------------------------------------

def _topn_lower_index(scores: np.ndarray, n: int) -> np.ndarray:
  """scores (..., g): keep[i] iff #{j: s_j > s_i or (s_j == s_i and j < i)} < n."""
  si = scores[..., :, None]
  sj = scores[..., None, :]
  g = scores.shape[-1]
  jlt = np.arange(g)[None, :] < np.arange(g)[:, None]      # [i, j] = j < i
  beats = (sj > si) | ((sj == si) & jlt)
  rank = beats.sum(-1)
  return rank < n


def parse_pattern(p: str) -> Tuple[int, int, bool]:
  p = p.strip()
  pairs = p.endswith("-pairs")
  core = p[: -len("-pairs")] if pairs else p
  n, m = (int(t) for t in core.split(":"))
  return n, m, pairs


def nm_mask(x, pattern: str = "4:8-pairs") -> np.ndarray:
  n, m, pairs = parse_pattern(pattern)
  a = np.abs(np.asarray(x, F64))
  # Spec is silent on NaN; scoring NaN as +inf keeps exactly n of every m (a NaN entry is
  # kept so that its poison reaches the output).
  a = np.where(np.isnan(a), np.inf, a)
  k = a.shape[-1]
  if k % m:
    raise ValueError(f"K={k} not a multiple of m={m}")
  g = a.reshape(a.shape[:-1] + (k // m, m))
  if pairs:
    # "n:m-pairs": m entries form m/2 pairs, keep the top n/2 pairs.
    ps = g.reshape(g.shape[:-1] + (m // 2, 2)).max(-1)
    keep_p = _topn_lower_index(ps, n // 2)
    keep = np.repeat(keep_p, 2, axis=-1)
  else:
    keep = _topn_lower_index(g, n)
  return keep.reshape(a.shape)


# ---------------------------------------------------------------------------
# Methods (DESIGN.md §2.6)
# ---------------------------------------------------------------------------

@dataclasses.dataclass
class ActResult:
  paths: List[np.ndarray]  # dequantized path tensors in the X' domain
  s: np.ndarray            # global tensor scale (1 for MX/HiF4 methods)

  @property
  def reconstruction(self) -> np.ndarray:
    """float64 s * sum(paths) (no float32 rounding)."""
    return np.asarray(self.s, F64) * np.sum(self.paths, axis=0)

  @property
  def fake_quant(self) -> np.ndarray:
    """The float32 dequantized activation: f32(s * f32(f32(P_1 + P_2) + ...))."""
    total = np.asarray(self.paths[0], F64)
    for p in self.paths[1:]:
      total = f32(total + p)
    return f32(np.asarray(self.s, F64) * total)


def _nv_x_prime(x):
  x = f32(x)
  s = tensor_scale_nvfp4(x, "tensor")
  return s, f32(x / s)


def _nv(x, b):
  return nvfp4_quantize(x, b, tensor_scale=1.0).deq


def _backbone(xp, pattern, q):
  mk = nm_mask(xp, pattern)
  return q(np.where(mk, xp, 0.0))


def act_bf16(x):
  return ActResult([f32(x)], np.asarray(1.0))


def act_nvfp4(x):
  """NVFP4 block 16 per-tensor of X itself; path in X' domain = code*d_b."""
  r = nvfp4_quantize(x, 16, "tensor")
  return ActResult([r.deq_unscaled], np.asarray(r.tensor_scale, F64))


def act_nvfp4_xprime(x):
  """Alternative: quantize X' = f32(X/s) with tensor scale 1."""
  s, xp = _nv_x_prime(x)
  return ActResult([_nv(xp, 16)], s)


def act_mxfp4(x):
  return ActResult([mxfp4_qdq(x, 32)], np.asarray(1.0))


def act_hif4(x):
  return ActResult([hif4_qdq(x)], np.asarray(1.0))


def _sharq_generic(xp, s, pattern, qs, qr, raw_residual=False):
  mk = nm_mask(xp, pattern)
  S = np.where(mk, xp, 0.0)
  Sh = qs(S)
  R = f32(xp - (S if raw_residual else Sh))
  return ActResult([Sh, qr(R)], s)


def act_sharq_nvfp4(x):
  s, xp = _nv_x_prime(x)
  return _sharq_generic(xp, s, "4:8-pairs", lambda t: _nv(t, 32), lambda t: _nv(t, 16))


def act_sharq_nvfp4_raw_residual(x):
  s, xp = _nv_x_prime(x)
  return _sharq_generic(xp, s, "4:8-pairs", lambda t: _nv(t, 32), lambda t: _nv(t, 16),
                        raw_residual=True)


def act_sharq_mxfp4(x):
  xp = f32(x)
  return _sharq_generic(xp, np.asarray(1.0), "4:8-pairs", lambda t: mxfp4_qdq(t, 64),
                        lambda t: mxfp4_qdq(t, 32))


def act_sharq_hif4(x):
  xp = f32(x)
  return _sharq_generic(xp, np.asarray(1.0), "2:4", hif4_qdq, hif4_qdq)


def act_sparse_only_nvfp4(x):
  s, xp = _nv_x_prime(x)
  return ActResult([_backbone(xp, "4:8-pairs", lambda t: _nv(t, 32))], s)


def act_dense_dense_nvfp4(x):
  s, xp = _nv_x_prime(x)
  p1 = _nv(xp, 16)
  p2 = _nv(f32(xp - p1), 16)
  return ActResult([p1, p2], s)


def act_sparse_sparse_nvfp4(x):
  s, xp = _nv_x_prime(x)
  q = lambda t: _nv(t, 32)
  s1 = _backbone(xp, "4:8-pairs", q)
  r1 = f32(xp - s1)
  s2 = _backbone(r1, "4:8-pairs", q)
  return ActResult([s1, s2], s)


def act_prune_nvfp4(x):
  s, xp = _nv_x_prime(x)
  return ActResult([_backbone(xp, "4:8-pairs", lambda t: _nv(t, 16))], s)


@dataclasses.dataclass
class WeightResult:
  deq_unscaled: np.ndarray  # W-hat' (without s_w)
  s_w: np.ndarray

  @property
  def deq(self):
    return f32(self.deq_unscaled * self.s_w)


def w_bf16(w):
  return WeightResult(f32(w), np.asarray(1.0))


def w_nvfp4(b):
  def f(w):
    r = nvfp4_quantize(w, b, "tensor")
    return WeightResult(r.deq_unscaled, np.asarray(r.tensor_scale, F64))
  return f


def w_mxfp4(w):
  return WeightResult(mxfp4_qdq(w, 32), np.asarray(1.0))


def w_hif4(w):
  return WeightResult(hif4_qdq(w), np.asarray(1.0))


ACTIVATION = {
    "bf16": act_bf16,
    "nvfp4": act_nvfp4,
    "mxfp4": act_mxfp4,
    "hif4": act_hif4,
    "sharq-nvfp4": act_sharq_nvfp4,
    "sharq-mxfp4": act_sharq_mxfp4,
    "sharq-hif4": act_sharq_hif4,
    "sparse-only-nvfp4": act_sparse_only_nvfp4,
    "dense-dense-nvfp4": act_dense_dense_nvfp4,
    "sparse-sparse-nvfp4": act_sparse_sparse_nvfp4,
    "sharq-nvfp4-raw-residual": act_sharq_nvfp4_raw_residual,
    "prune-nvfp4": act_prune_nvfp4,
}

WEIGHT = {
    "bf16": w_bf16,
    "nvfp4": w_nvfp4(16),
    "mxfp4": w_mxfp4,
    "hif4": w_hif4,
    "sharq-nvfp4": w_nvfp4(32),
    "sharq-mxfp4": w_mxfp4,
    "sharq-hif4": w_hif4,
    "sparse-only-nvfp4": w_nvfp4(32),
    "dense-dense-nvfp4": w_nvfp4(32),
    "sparse-sparse-nvfp4": w_nvfp4(32),
    "sharq-nvfp4-raw-residual": w_nvfp4(32),
    "prune-nvfp4": w_nvfp4(16),
}

METHOD_NAMES = tuple(ACTIVATION)


def activation_paths(name: str, x) -> ActResult:
  return ACTIVATION[name](x)


def weight_quant(name: str, w) -> WeightResult:
  return WEIGHT[name](w)


def linear(name: str, x, w, bias=None) -> np.ndarray:
  """Y = s * s_w * sum_i P_i @ W-hat'^T, all in float64."""
  a = activation_paths(name, x)
  wr = weight_quant(name, w)
  acc = sum(np.asarray(p, F64) @ np.asarray(wr.deq_unscaled, F64).T for p in a.paths)
  y = np.asarray(a.s, F64) * np.asarray(wr.s_w, F64) * acc
  if bias is not None:
    y = y + np.asarray(bias, F64)
  return y


# ---------------------------------------------------------------------------
# Test data and comparison helpers (used by the tests; not part of the numerics)
# ---------------------------------------------------------------------------

def heavy_tailed(rng: np.random.Generator, rows: int, k: int, *, binades: float = 8.0,
                 outlier_p: float = 1e-3, outlier_channels: int = 0,
                 channel_gain: float = 50.0, zero_block: int = 64,
                 zero_blocks: int = 4) -> np.ndarray:
  """float32 (rows, k): Gaussian with rare 10-100x outliers, each row scaled by 2^u,
  u ~ U(-binades/2, binades/2); optional outlier channels (columns x channel_gain);
  a few all-zero blocks and scattered exact zeros.  All non-zero magnitudes stay far
  inside the float32 normal range (XLA CPU flushes subnormals)."""
  x = rng.standard_normal((rows, k))
  o = rng.random((rows, k)) < outlier_p
  x[o] *= rng.uniform(10, 100, o.sum()) * rng.choice([-1, 1], o.sum())
  if outlier_channels:
    cols = rng.choice(k, outlier_channels, replace=False)
    x[:, cols] *= channel_gain
  x *= np.exp2(rng.uniform(-binades / 2, binades / 2, (rows, 1)))
  z = rng.random((rows, k)) < 1e-3
  x[z] = 0.0
  for _ in range(zero_blocks):
    r = rng.integers(rows)
    c = rng.integers(k // zero_block) * zero_block
    x[r, c:c + zero_block] = 0.0
  # keep magnitudes >= 1e-30 (or exactly 0)
  tiny = (np.abs(x) < 1e-30) & (x != 0)
  x[tiny] = 0.0
  return x.astype(F32)


def mismatch(got, expected, x=None, limit: int = 5):
  """(count, examples): value equality with equal NaN positions (±0 compare equal)."""
  g = np.asarray(got, F64)
  e = np.asarray(expected, F64)
  if g.shape != e.shape:
    raise AssertionError(f"shape {g.shape} != {e.shape}")
  gn, en = np.isnan(g), np.isnan(e)
  bad = (gn != en) | (~gn & ~en & (g != e))
  idx = np.argwhere(bad)
  ex = []
  for i in idx[:limit]:
    i = tuple(i)
    ex.append(dict(index=i, input=None if x is None else float(np.asarray(x)[i]),
                   expected=float(e[i]), got=float(g[i])))
  return int(bad.sum()), ex
