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
  # without gamma, without a given scale= and with M <= block_m; ignored otherwise. Off
  # by default: measured slower on the H200 (M = 1: 28 vs 22 µs at K = 4096, 50 vs 35 µs
  # at K = 14336), as each program's serial amax loop costs more than the two launches;
  # GPU-checked at M = 1, 3, 8 (BENCHMARKS.md notes two undiagnosed crashes of runs with
  # it on by default).
  in_kernel_amax: bool = False

  def __post_init__(self):
    for name in ("block_m", "block_k"):
      v = getattr(self, name)
      if v <= 0 or v & (v - 1):
        raise ValueError(f"PrepConfig.{name} must be a power of two, got {v}")
    if self.block_k % 32:
      raise ValueError(f"PrepConfig.block_k must be a multiple of 32, got {self.block_k}")


def default_config(m: int, k: int) -> PrepConfig:
  """Tiles from the H200 sweep (kernels/NOTES.md): 128-wide K tiles, 16 rows (8 for
  m <= 8); the largest power-of-two block_k <= 128 that divides k."""
  block_k = 128
  while block_k > 32 and k % block_k:
    block_k //= 2
  if m <= 8:
    return PrepConfig(block_m=8, block_k=block_k, num_warps=2)
  return PrepConfig(block_m=16, block_k=block_k, num_warps=4)
