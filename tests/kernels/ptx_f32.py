"""Runs the straight-line float32 PTX sequences of kernels/common.py on NumPy arrays.

It knows only the instructions those strings use (mul.rn, fma.rn, neg, abs, min,
rcp.approx.ftz on .f32), each from the PTX ISA's definition:
one rounding to nearest even per instruction, FMA included (emulated exactly below).
rcp.approx is the one approximate instruction; the caller says what it returns.
"""

from __future__ import annotations

import numpy as np


def fma32(a, b, c):
  """RN32(a·b + c) for float32 arrays, exactly: the float64 sum of the exact float64
  product and c, corrected by its TwoSum error where it falls on a float32 midpoint."""
  a, b, c = (np.asarray(v, np.float32) for v in (a, b, c))
  p = a.astype(np.float64) * b.astype(np.float64)  # exact (24 + 24 bits)
  c64 = c.astype(np.float64)
  with np.errstate(invalid="ignore", over="ignore"):
    s = p + c64
    bb = s - p
    err = (p - (s - bb)) + (c64 - bb)  # a·b + c = s + err exactly
    r = s.astype(np.float32)
    # r as a float64 grid point; an overflow to ±Inf stands for ±2^128, the next point
    # of the float32 grid beyond the largest finite value (its rounding midpoint with
    # FLT_MAX is 2^128 − 2^103).
    r64 = np.where(np.isinf(r) & np.isfinite(s), np.copysign(2.0**128, s), r)
    up = np.nextafter(r, np.float32(np.inf))
    down = np.nextafter(r, np.float32(-np.inf))
    up64 = np.where(np.isinf(up) & ~np.isinf(r), 2.0**128, up)
    down64 = np.where(np.isinf(down) & ~np.isinf(r), -(2.0**128), down)
    r = np.where(((up64 + r64) / 2 == s) & (err > 0), up, r)
    r = np.where(((down64 + r64) / 2 == s) & (err < 0), down, r)
  return r.astype(np.float32)


def rcp_round_to_nearest(y):
  """An rcp.approx that happens to round correctly (NumPy's 1 / y)."""
  return (np.float32(1) / np.asarray(y, np.float32)).astype(np.float32)


def run(asm: str, *inputs, rcp_approx=rcp_round_to_nearest) -> np.ndarray:
  """$0 of `asm` with $1, $2, ... = inputs (float32 arrays, broadcast), elementwise."""
  shape = np.broadcast_shapes(*(np.shape(x) for x in inputs))
  regs = {f"${i + 1}": np.broadcast_to(np.asarray(x, np.float32), shape).view(np.uint32)
          for i, x in enumerate(inputs)}

  def val(tok):
    tok = tok.strip()
    if tok in regs:
      return regs[tok]
    return np.full(shape, int(tok[2:], 16), np.uint32)  # a 0fXXXXXXXX immediate

  def f(tok):
    return val(tok).view(np.float32)

  for line in asm.replace("\\n", "\n").splitlines():
    line = line.strip().rstrip(";")
    if not line or line in "{}" or line.startswith(".reg"):
      continue
    op, args = line.split(None, 1)
    a = [t.strip() for t in args.split(",")]
    with np.errstate(all="ignore"):
      if op == "mul.rn.f32":
        out = (f(a[1]) * f(a[2])).astype(np.float32)
      elif op == "fma.rn.f32":
        out = fma32(f(a[1]), f(a[2]), f(a[3]))
      elif op == "neg.f32":
        out = -f(a[1])
      elif op == "abs.f32":
        out = np.abs(f(a[1]))
      elif op == "min.f32":  # PTX min: a NaN operand gives the other one
        x, y = f(a[1]), f(a[2])
        out = np.where(np.isnan(x), y, np.where(np.isnan(y), x, np.minimum(x, y)))
      elif op == "rcp.approx.ftz.f32":
        out = np.asarray(rcp_approx(f(a[1])), np.float32)
      else:
        raise NotImplementedError(op)
    regs[a[0]] = np.asarray(out).astype(np.float32).view(np.uint32)
  return regs["$0"].view(np.float32)
