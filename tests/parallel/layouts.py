"""Mesh layouts for the SPMD tests, derived from the devices this run has.

On CPU the test session simulates 8 devices (tests/conftest.py): (8,1), (1,8), (2,4).
On a machine with real accelerators the same tests run on what is there, e.g. two GPUs:
(2,1) data-parallel and (1,2) tensor-parallel.
"""

import jax
import numpy as np
from jax.sharding import Mesh

DEVICES = jax.device_count()


def layouts(n: int = DEVICES) -> list[tuple[int, int]]:
  """(dp, tp) pairs for n devices: all-data, all-model, and 2 × n/2 when n ≥ 4."""
  if n < 2:
    return []
  out = [(n, 1), (1, n)]
  if n >= 4 and n % 2 == 0:
    out.append((2, n // 2))
  return out


def mesh(dp: int, tp: int) -> Mesh:
  """A ("data", "model") mesh over the first dp·tp devices."""
  return Mesh(np.array(jax.devices()[:dp * tp]).reshape(dp, tp), ("data", "model"))
