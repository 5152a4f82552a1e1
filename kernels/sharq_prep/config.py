"""Tile configuration of the fused SharQ preparation kernel."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class PrepConfig:
  """One program prepares a (block_m, block_k) tile of the activation.

  block_k must be a power of two and a multiple of 32 (one backbone block holds 32 dense
  K positions, i.e. four 4:8-pairs groups and two residual blocks of 16).
  """

  block_m: int = 16
  block_k: int = 256
  num_warps: int = 4
  num_stages: int = 1
  # One launch instead of three when all rows fit one row block (decode): every program
  # reads the whole X (from L2) for the tensor amax and derives s itself. Applies only
  # without gamma, without a given scale= and with M <= block_m; ignored otherwise.
  # default_config turns it on for small decode row blocks (IN_KERNEL_AMAX_MAX_ELEMENTS).
  in_kernel_amax: bool = False

  def __post_init__(self):
    for name in ("block_m", "block_k"):
      v = getattr(self, name)
      if v <= 0 or v & (v - 1):
        raise ValueError(f"PrepConfig.{name} must be a power of two, got {v}")
    if self.block_k % 32:
      raise ValueError(f"PrepConfig.block_k must be a multiple of 32, got {self.block_k}")


# Up to this many rows the default tile holds all of them (block_m = M rounded up to a
# power of two: no masked rows).
DECODE_MAX_M = 8
# The in-kernel amax reads the row block in steps of up to this many elements, as wide
# as K allows, and issues all steps' loads together up to AMAX_UNROLL_MAX_STEPS (a loop
# waits one L2 round trip per step).
AMAX_STEP_ELEMENTS = 8192
AMAX_UNROLL_MAX_STEPS = 8


def amax_step(block_m: int, k: int, block_k: int) -> int:
  """Columns per step of the in-kernel amax: block_k doubled while the step stays
  within AMAX_STEP_ELEMENTS and divides k."""
  step = block_k
  while step * 2 * block_m <= AMAX_STEP_ELEMENTS and k % (step * 2) == 0:
    step *= 2
  return step


# Where default_config moves the amax into the kernel. Measured on the H200
# (BENCHMARKS.md, device time, same tile either way): faster at M = 1, 2 with K = 4096
# (session 5: 2.7 vs 4.2 and 3.8 vs 4.8 µs), so any row block up to
# IN_KERNEL_AMAX_MAX_ELEMENTS; at M = 1, K = 14336 slower while its loop waited for each
# step's load (5.2 vs 4.6 µs), faster with the loads issued together (session 10, run
# 44: 3.7 vs 4.0 µs), so one row up to IN_KERNEL_AMAX_ONE_ROW_MAX_K where the steps are
# unrolled; slower at M = 2, K = 14336 (6.1 vs 4.7 µs) and M = 8 (19.9 vs 9.1): every
# program reads the whole row block for it.
IN_KERNEL_AMAX_MAX_ELEMENTS = 8192
IN_KERNEL_AMAX_ONE_ROW_MAX_K = 14336


def _in_kernel_amax_pays(block_m: int, k: int, block_k: int) -> bool:
  if block_m * k <= IN_KERNEL_AMAX_MAX_ELEMENTS:
    return True
  return (block_m == 1 and k <= IN_KERNEL_AMAX_ONE_ROW_MAX_K
          and k // amax_step(block_m, k, block_k) <= AMAX_UNROLL_MAX_STEPS)


def default_config(m: int, k: int) -> PrepConfig:
  """Tiles from the H200 sweeps (kernels/NOTES.md): 128-wide K tiles (the largest power
  of two <= 128 that divides k). Up to DECODE_MAX_M rows: one row block of M rounded up
  to a power of two (at M = 1 an 8-row tile compiles to 3.5x the instructions) and the
  amax inside the kernel where that measured faster (_in_kernel_amax_pays): one launch
  instead of three. Else 16 rows."""
  block_k = 128
  while block_k > 32 and k % block_k:
    block_k //= 2
  if m <= DECODE_MAX_M:
    block_m = 1 << max(0, m - 1).bit_length()
    return PrepConfig(block_m=block_m, block_k=block_k, num_warps=2,
                      in_kernel_amax=_in_kernel_amax_pays(block_m, k, block_k))
  return PrepConfig(block_m=16, block_k=block_k, num_warps=4)
