"""A tiny interpreter for the PTX that mma_gemv_gpu and int8_gemv_gpu issue, run on a
warp of 32 lanes.

It knows only the instructions those asm strings use (integer moves, masks, shifts,
byte permutes, predicates and selects, float32 arithmetic and conversions,
shfl.sync.idx, mma.sync.m16n8k16 f32.f16.f16.f32 and m16n8k32 s32.s8.s8.s32) and
follows the PTX ISA, written here from the spec, not from the kernels:

  m16n8k16 f16 (a register: two float16, low half first):
  A 16x16 (row): lane 4g+t holds a0,a1 = A[g][2t, 2t+1], a2,a3 = A[g+8][2t, 2t+1],
                 a4,a5 = A[g][2t+8, 2t+9], a6,a7 = A[g+8][2t+8, 2t+9]
  B 16x8 (col):  b0,b1 = B[2t, 2t+1][g], b2,b3 = B[2t+8, 2t+9][g]
  m16n8k32 s8 (a register: four int8, byte 0 first):
  A 16x32 (row): reg0 = A[g][4t..4t+3], reg1 = A[g+8][4t..4t+3],
                 reg2 = A[g][4t+16..4t+19], reg3 = A[g+8][4t+16..4t+19]
  B 32x8 (col):  reg0 = B[4t..4t+3][g], reg1 = B[4t+16..4t+19][g]
  C, D 16x8:     c0,c1 = C[g][2t, 2t+1], c2,c3 = C[g+8][2t, 2t+1]

prmt.b32 d, a, b, c (default mode): byte i of d is byte c[4i+2:4i] of the 8 bytes
{b, a} (a's bytes 0-3), or, if c[4i+3] is set, that byte's top bit replicated.
cvt.rn.f16x2.e4m3x2 d, a: the low half of d from a's low byte, the high from its high.

Registers hold 32-bit patterns (two float16 halves, low half first, or one float32).
"""

from __future__ import annotations

import re

import numpy as np

_MASK = 0xFFFFFFFF


def f16_pair(lo: float, hi: float) -> int:
  """Two float16 values in one 32-bit word (lo in the low half)."""
  b = np.array([lo, hi], np.float16).view(np.uint16).astype(np.uint32)
  return int(b[0] | (b[1] << 16))


def f32_bits(v: float) -> int:
  return int(np.array(v, np.float32).view(np.uint32))


def bits_f32(b: int) -> float:
  return float(np.array(b & _MASK, np.uint32).view(np.float32))


def _int8s(b: int) -> list[int]:
  return [((b >> (8 * i)) & 0xFF) - 256 * (((b >> (8 * i)) & 0x80) != 0) for i in range(4)]


def _prmt(a: int, b: int, c: int) -> int:
  table = [(a >> (8 * i)) & 0xFF for i in range(4)] + [(b >> (8 * i)) & 0xFF
                                                       for i in range(4)]
  out = 0
  for i in range(4):
    sel = (c >> (4 * i)) & 0xF
    byte = table[sel & 7]
    if sel & 8:
      byte = 0xFF if byte & 0x80 else 0
    out |= byte << (8 * i)
  return out


def _e4m3(byte: int) -> float:
  import ml_dtypes  # pylint: disable=g-import-not-at-top
  return float(np.array([byte], np.uint8).view(ml_dtypes.float8_e4m3fn).astype(np.float32)[0])


def _f16_bits(v: float) -> int:
  return int(np.array([v], np.float16).view(np.uint16)[0])


def _halves(b: int) -> tuple[float, float]:
  h = np.array([b & 0xFFFF, (b >> 16) & 0xFFFF], np.uint16).view(np.float16)
  return float(h[0]), float(h[1])


class Warp:
  """32 lanes running one asm string; operands[$i] per lane are 32-bit patterns."""

  def __init__(self, n_outputs: int):
    self.n_outputs = n_outputs

  def run(self, asm: str, inputs: list[list[int]]) -> list[list[int]]:
    """inputs[lane] = patterns of $n_outputs.. ; returns outputs[lane] = $0.. patterns."""
    regs = [dict() for _ in range(32)]
    for lane in range(32):
      for i, v in enumerate(inputs[lane]):
        regs[lane][f"${self.n_outputs + i}"] = v & _MASK
      regs[lane]["%laneid"] = lane
    for line in asm.splitlines():
      line = line.strip().rstrip(";")
      if not line or line in "{}" or line.startswith(".reg"):
        continue
      op, args = line.split(None, 1)
      unpack = re.fullmatch(r"\{\s*(\w+)\s*,\s*(\w+)\s*\}\s*,\s*(\S+)", args)
      if op == "mov.b32" and unpack:  # {lo, hi} = 16-bit halves of a register
        for r in regs:
          v = self._val(unpack.group(3), r)
          r[unpack.group(1)], r[unpack.group(2)] = v & 0xFFFF, v >> 16
        continue
      self._exec(op, args, regs)
    return [[regs[lane][f"${i}"] for i in range(self.n_outputs)] for lane in range(32)]

  @staticmethod
  def _val(tok: str, r: dict) -> int:
    tok = tok.strip()
    if tok in r:
      return r[tok]
    if tok.startswith("0f"):
      return int(tok[2:], 16)
    return int(tok, 0) & _MASK

  def _exec(self, op: str, args: str, regs) -> None:
    if op.startswith("mma.sync"):
      if ".m16n8k32.row.col.s32.s8.s8.s32" in op:
        groups = re.findall(r"\{([^}]*)\}", args)
        self._imma(*([s.strip() for s in grp.split(",")] for grp in groups), regs)
      else:
        self._mma(args, regs)
      return
    a = [s.strip() for s in args.split(",")]
    if op.startswith("shfl.sync.idx"):
      src_vals = [regs[lane][a[1]] if a[1] in regs[lane] else self._val(a[1], regs[lane])
                  for lane in range(32)]
      for lane in range(32):
        regs[lane][a[0]] = src_vals[self._val(a[2], regs[lane]) & 31]
      return
    for r in regs:
      v = lambda i, r=r: self._val(a[i], r)  # noqa: E731
      if op in ("mov.u32", "mov.b32", "mov.f32"):
        r[a[0]] = v(1)
      elif op in ("and.b32",):
        r[a[0]] = v(1) & v(2)
      elif op == "xor.b32":
        r[a[0]] = v(1) ^ v(2)
      elif op == "prmt.b32":
        r[a[0]] = _prmt(v(1), v(2), v(3))
      elif op == "sub.s32":
        r[a[0]] = (v(1) - v(2)) & _MASK
      elif op == "cvt.rn.f32.s32":
        x = v(1)
        r[a[0]] = f32_bits(np.float32(x - (1 << 32) if x & 0x80000000 else x))
      elif op == "cvt.rn.f16x2.e4m3x2":
        x = v(1)
        r[a[0]] = _f16_bits(_e4m3(x & 0xFF)) | (_f16_bits(_e4m3((x >> 8) & 0xFF)) << 16)
      elif op == "cvt.f32.f16":
        r[a[0]] = f32_bits(np.float32(np.array([v(1)], np.uint16).view(np.float16)[0]))
      elif op == "mul.f32":
        r[a[0]] = f32_bits(np.float32(bits_f32(v(1))) * np.float32(bits_f32(v(2))))
      elif op == "fma.rn.f32":  # one rounding: the exact product and sum in float64
        exact = np.float64(bits_f32(v(1))) * bits_f32(v(2)) + bits_f32(v(3))
        r[a[0]] = f32_bits(np.float32(exact))
      elif op in ("shr.u32", "shr.b32"):
        r[a[0]] = v(1) >> v(2)
      elif op == "add.u32":
        r[a[0]] = (v(1) + v(2)) & _MASK
      elif op == "add.f32":
        r[a[0]] = f32_bits(np.float32(bits_f32(v(1))) + np.float32(bits_f32(v(2))))
      elif op.startswith("setp."):
        cmp = op.split(".")[1]
        x, y = v(1), v(2)
        r[a[0]] = {"eq": x == y, "ne": x != y, "ge": x >= y, "gt": x > y, "le": x <= y,
                   "lt": x < y}[cmp]
      elif op in ("selp.b32", "selp.f32"):
        r[a[0]] = v(1) if r[a[3]] else v(2)
      else:
        raise NotImplementedError(op)

  def _mma(self, args: str, regs) -> None:
    groups = re.findall(r"\{([^}]*)\}", args)
    d, a, b, c = ([s.strip() for s in grp.split(",")] for grp in groups)
    am = np.zeros((16, 16)), np.zeros((16, 8)), np.zeros((16, 8))
    A, B, C = am
    for lane in range(32):
      g, t = lane >> 2, lane & 3
      r = regs[lane]
      av = [_halves(self._val(x, r)) for x in a]
      A[g, 2 * t:2 * t + 2] = av[0]
      A[g + 8, 2 * t:2 * t + 2] = av[1]
      A[g, 2 * t + 8:2 * t + 10] = av[2]
      A[g + 8, 2 * t + 8:2 * t + 10] = av[3]
      bv = [_halves(self._val(x, r)) for x in b]
      B[2 * t:2 * t + 2, g] = bv[0]
      B[2 * t + 8:2 * t + 10, g] = bv[1]
      cv = [bits_f32(self._val(x, r)) for x in c]
      C[g, 2 * t:2 * t + 2] = cv[:2]
      C[g + 8, 2 * t:2 * t + 2] = cv[2:]
    D = (A @ B + C).astype(np.float32)
    for lane in range(32):
      g, t = lane >> 2, lane & 3
      out = [D[g, 2 * t], D[g, 2 * t + 1], D[g + 8, 2 * t], D[g + 8, 2 * t + 1]]
      for name, val in zip(d, out):
        regs[lane][name] = f32_bits(val)

  def _imma(self, d, a, b, c, regs) -> None:
    """mma.sync.m16n8k32.row.col.s32.s8.s8.s32: int32 D = A·B + C (exact)."""
    A = np.zeros((16, 32), np.int64)
    B = np.zeros((32, 8), np.int64)
    C = np.zeros((16, 8), np.int64)
    for lane in range(32):
      g, t = lane >> 2, lane & 3
      r = regs[lane]
      av = [_int8s(self._val(x, r)) for x in a]
      A[g, 4 * t:4 * t + 4], A[g + 8, 4 * t:4 * t + 4] = av[0], av[1]
      A[g, 4 * t + 16:4 * t + 20], A[g + 8, 4 * t + 16:4 * t + 20] = av[2], av[3]
      bv = [_int8s(self._val(x, r)) for x in b]
      B[4 * t:4 * t + 4, g], B[4 * t + 16:4 * t + 20, g] = bv[0], bv[1]
      cv = [self._val(x, r) for x in c]
      cv = [x - (1 << 32) if x & 0x80000000 else x for x in cv]
      C[g, 2 * t:2 * t + 2], C[g + 8, 2 * t:2 * t + 2] = cv[:2], cv[2:]
    D = A @ B + C
    for lane in range(32):
      g, t = lane >> 2, lane & 3
      out = [D[g, 2 * t], D[g, 2 * t + 1], D[g + 8, 2 * t], D[g + 8, 2 * t + 1]]
      for name, val in zip(d, out):
        regs[lane][name] = int(val) & _MASK
