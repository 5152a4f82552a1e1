"""Version shims for the Pallas APIs the kernels use (jax 0.10.x here, 0.11.x on GPUs).

Everything version-dependent goes through this module, so a moved API is fixed once.
"""

from __future__ import annotations

import jax
from jax.experimental import pallas as pl

try:  # jax >= 0.4.3x: Triton-specific primitives live in pallas.triton.
  from jax.experimental.pallas import triton as plgpu
except ImportError:  # pragma: no cover
  plgpu = None


def masked_load(ref, mask, other):
  """ref[...] where mask, else other (no memory access where mask is False)."""
  if plgpu is not None and hasattr(plgpu, "load"):
    return plgpu.load(ref, mask=mask, other=other)
  return pl.load(ref, None, mask=mask, other=other)  # pragma: no cover


def masked_store(ref, value, mask):
  """ref[...] = value where mask."""
  if plgpu is not None and hasattr(plgpu, "store"):
    return plgpu.store(ref, value, mask=mask)
  return pl.store(ref, None, value, mask=mask)  # pragma: no cover


def cta_barrier() -> None:
  """bar.sync across the program's warps (inside a Pallas-Triton kernel). No memory
  access crosses it, so ptxas cannot move a load issued before it to after it."""
  if plgpu is None or not hasattr(plgpu, "debug_barrier"):  # pragma: no cover
    raise NotImplementedError("this jax has no pallas.triton.debug_barrier")
  plgpu.debug_barrier()


def compiler_params(num_warps: int, num_stages: int):
  """Triton compiler parameters for pallas_call."""
  if plgpu is not None and hasattr(plgpu, "CompilerParams"):
    return plgpu.CompilerParams(num_warps=num_warps, num_stages=num_stages)
  return dict(triton=dict(num_warps=num_warps, num_stages=num_stages))  # pragma: no cover


def on_gpu() -> bool:
  """Whether the default JAX backend is an NVIDIA GPU."""
  return jax.default_backend() == "gpu"
