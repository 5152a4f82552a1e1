"""The MMA GEMV's inline PTX, run by a warp interpreter written from the PTX ISA's
fragment layouts (tests/kernels/ptx_warp.py): every lane must end up with its own
row's dot products with both activation columns, over several K steps, for both row
groups. Interpret mode (test_sharq_matmul) replaces this PTX by float32 FMAs, so this
is the CPU test of the lane logic itself; the kernel's layout assumption (a warp's
lanes hold 32 rows and the same K positions) is what the H200 checks add.
"""

import numpy as np
import pytest

from sharq_jax.kernels.sharq_matmul import mma_gemv_gpu
from tests.kernels.ptx_warp import Warp, bits_f32, f16_pair


def _pairs(v):
  """8 float16 values -> 4 words of pairs (elements 2i, 2i+1)."""
  return [f16_pair(v[2 * i], v[2 * i + 1]) for i in range(4)]


@pytest.mark.parametrize("steps", [1, 3])
def test_every_lane_gets_its_rows_dot_products(steps):
  rng = np.random.default_rng(steps)
  # Per step: lane l holds rows l (group 0) and 32 + l (group 1) at the same 8 even-K
  # (low nibble) and 8 odd-K (high nibble) positions; two activation columns.
  f16 = lambda *s: rng.standard_normal(s).astype(np.float16)  # noqa: E731
  w = f16(steps, 2, 2, 32, 8)  # (step, group, plane lo/hi, lane, 8)
  x = f16(steps, 2, 2, 8)  # (step, column half, parity even/odd, 8)
  acc = [[0] * 8 for _ in range(32)]
  mma = Warp(n_outputs=8)
  for s in range(steps):
    inputs = []
    for lane in range(32):
      ops = []
      for g, plane in ((0, 0), (1, 0), (0, 1), (1, 1)):  # lo0, lo1, hi0, hi1
        ops += _pairs(w[s, g, plane, lane])
      for half in (0, 1):  # even0, odd0, even1, odd1
        for parity in (0, 1):
          ops += _pairs(x[s, half, parity])
      inputs.append(ops + acc[lane])
    acc = mma.run(mma_gemv_gpu._mma_asm(), inputs)
  want = np.einsum("sgplk,shpk->glh", w.astype(np.float64), x.astype(np.float64))
  extract = Warp(n_outputs=8)
  for g in (0, 1):
    for half in (0, 1):
      out = extract.run(mma_gemv_gpu._extract_asm(g, half), acc)
      got = np.array([bits_f32(o[0]) for o in out])
      np.testing.assert_allclose(got, want[g, :, half], rtol=1e-5, atol=1e-5)
      assert all(o[1:] == [0] * 7 for o in out)  # the other slots are zero

