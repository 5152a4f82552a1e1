"""The int8 GEMV's inline PTX (int8_gemv_gpu), run by the warp interpreter written from
the PTX ISA (tests/kernels/ptx_warp.py): byte-permute decode of E2M1 nibbles, the
lane's choice of B column, the int8 MMAs, and the block scales applied to the sums.
Every lane must end up with its own two rows' sums over both paths. Interpret mode
(test_int8_gemv) replaces this PTX by float32 jnp; the kernel's layout assumption
(a warp's lanes hold 32 rows at the same K positions) is what the H200 checks add.
"""

import ml_dtypes
import numpy as np
import pytest

from sharq_jax.kernels.sharq_matmul import int8_gemv_gpu
from tests.kernels.ptx_warp import Warp, bits_f32, f32_bits

E2M1 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6])


def _words(nibbles):
  """16 nibbles (K order) -> 2 words, nibble i at bits 4·(i % 8) of word i // 8."""
  return [sum(int(v) << (4 * i) for i, v in enumerate(nibbles[8 * w:8 * w + 8]))
          for w in range(2)]


def _int8_words(vals):
  """16 int8 values -> 4 words, byte 0 first."""
  b = np.asarray(vals, np.int8).view(np.uint8).astype(np.uint64)
  return [int(b[4 * w] | b[4 * w + 1] << 8 | b[4 * w + 2] << 16 | b[4 * w + 3] << 24)
          for w in range(4)]


def _e4m3(byte):
  return float(np.array([byte], np.uint8).view(ml_dtypes.float8_e4m3fn).astype(np.float64)[0])


def _run(rng, steps, bad_lane=None):
  asm = int8_gemv_gpu._step_asm()  # pylint: disable=protected-access
  warp = Warp(n_outputs=2)
  table = [int(v) for v in np.asarray(int8_gemv_gpu._TWICE_E2M1).reshape(-1)[:2]]  # pylint: disable=protected-access
  acc = [[f32_bits(rng.standard_normal()), f32_bits(rng.standard_normal())]
         for _ in range(32)]
  want = np.array([[bits_f32(a) for a in lane] for lane in acc], np.float32)
  scale_bytes = [b for b in range(1, 0x7F) if 0x20 <= b <= 0x50]  # finite, moderate
  for _ in range(steps):
    codes = rng.integers(0, 16, (32, 2, 16))  # lane, row group, K
    x = rng.choice(np.arange(-12, 13), (2, 16)).astype(np.int8)  # path, K (2·E2M1 grid)
    ws = rng.choice(scale_bytes, (32, 2))
    if bad_lane is not None:
      ws[bad_lane, 0] = 0x7F  # a NaN/Inf block's scale code
    sa = [_e4m3(int(rng.choice(scale_bytes))) for _ in range(2)]
    inputs = []
    for lane in range(32):
      ops = _words(codes[lane, 0]) + _words(codes[lane, 1])
      ops += _int8_words(x[0]) + _int8_words(x[1])
      ops += [int(ws[lane, 0])] * 2 + [int(ws[lane, 1])] * 2
      ops += [f32_bits(sa[0]), f32_bits(sa[1])] + table + acc[lane]
      inputs.append(ops)
    acc = warp.run(asm, inputs)
    for lane in range(32):  # the asm's order: one FMA per path, each rounded once
      for g in range(2):
        for p in range(2):
          dot = float(np.dot(2 * E2M1[codes[lane, g]], x[p].astype(np.float64)))
          scale = np.float32(_e4m3(int(ws[lane, g])) * sa[p])  # exact: two E4M3 values
          want[lane, g] = np.float32(np.float64(want[lane, g]) + dot * np.float64(scale))
  got = np.array([[bits_f32(a) for a in lane] for lane in acc], np.float32)
  return got, want


@pytest.mark.parametrize("steps", [1, 3])
def test_every_lane_gets_its_rows_sums_over_both_paths(steps):
  got, want = _run(np.random.default_rng(steps), steps)
  np.testing.assert_array_equal(got, want)  # bit for bit: the same roundings


def test_a_nan_weight_block_reaches_its_own_row_only():
  got, want = _run(np.random.default_rng(7), 1, bad_lane=5)
  assert np.isnan(got[5, 0]) and not np.isnan(np.delete(got.reshape(-1), 10)).any()
  np.testing.assert_array_equal(np.delete(got.reshape(-1), 10),
                                np.delete(want.reshape(-1), 10))
