"""Dispatch from sharq_jax.linear.sharq_dot to the Pallas kernels.

sharq_dot(..., backend="pallas"|"auto") asks `supports` / `why_unsupported` and calls
`sharq_dot_pallas`. The Pallas path computes exactly what the XLA reference computes
(same decomposition bit for bit, the same two products summed in float32, up to the
order of the float32 accumulation); anything it cannot compute that way is refused with
the reason, never approximated.

Performance note: a QuantizedWeight passed here is packed (nibbles + E4M3 scale bytes)
on every call, an extra pass over the weight. sharq_jax.nn.SharQLinear packs once when
it is built for the kernels and passes the PackedWeight; other callers that reuse a
weight should `pack_weight` once too.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sharq_jax.kernels.sharq_matmul import PackedWeight, pack_weight, sharq_matmul
from sharq_jax.kernels.sharq_matmul.packing import WEIGHT_BLOCK
from sharq_jax.kernels.sharq_prep import K_MULTIPLE, PathMode

SUPPORTED_METHODS = ("sharq-nvfp4",)
SUPPORTED_DTYPES = (jnp.bfloat16, jnp.float16, jnp.float32)
MIN_N_MULTIPLE = 16


def _weight_dims(w) -> tuple[int, int] | str:
  """(N, K) of a weight the kernels can take, or the reason they cannot."""
  if isinstance(w, PackedWeight):
    return w.n, w.k
  method = getattr(getattr(w, "method", None), "name", None)
  if method not in SUPPORTED_METHODS:
    return (f"method {method!r} has no Pallas kernel (supported: "
            f"{', '.join(SUPPORTED_METHODS)})")
  q = w.data
  fmt = getattr(q, "fmt", None)
  if getattr(fmt, "block_size", None) != WEIGHT_BLOCK:
    return f"weight format {fmt} is not NVFP4 block {WEIGHT_BLOCK}"
  if q.codes.shape[-1] != w.logical_k:
    return "padded weights (K not a multiple of 32) are not supported"
  return q.codes.shape[0], w.logical_k


def why_weight_unsupported(w) -> str | None:
  """The reason the kernels cannot take weight w (whatever x), or None if they can."""
  dims = _weight_dims(w)
  if isinstance(dims, str):
    return dims
  n, k = dims
  if k % K_MULTIPLE:
    return f"K={k} is not a multiple of {K_MULTIPLE}"
  if n % MIN_N_MULTIPLE:
    return f"N={n} is not a multiple of {MIN_N_MULTIPLE}"
  return None


def why_unsupported(x, w, *, pad: bool = False, interpret: bool = False) -> str | None:
  """The reason the Pallas path cannot run sharq_dot(x, w), or None if it can."""
  dims = _weight_dims(w)
  if isinstance(dims, str):
    return dims
  n, k_w = dims
  k = x.shape[-1] if getattr(x, "ndim", 0) else None
  if k is None:
    return "x must have a K axis"
  if k != k_w:
    return f"x has K={k} but the weight has K={k_w}"
  if k % K_MULTIPLE:
    return (f"K={k} is not a multiple of {K_MULTIPLE}" +
            (" (pad=True padding is not implemented in the kernels)" if pad else ""))
  if n % MIN_N_MULTIPLE:
    return f"N={n} is not a multiple of {MIN_N_MULTIPLE}"
  if not any(jnp.dtype(x.dtype) == jnp.dtype(d) for d in SUPPORTED_DTYPES):
    return f"x dtype {x.dtype} is not one of bfloat16, float16, float32"
  if not interpret and jax.default_backend() != "gpu":
    return (f"the Pallas kernels need an NVIDIA GPU (the default backend is "
            f"{jax.default_backend()})")
  return None


def supports(x, w, *, pad: bool = False, interpret: bool = False) -> bool:
  """Whether sharq_dot_pallas can compute sharq_dot(x, w) (see why_unsupported)."""
  return why_unsupported(x, w, pad=pad, interpret=interpret) is None


def sharq_dot_pallas(x: jax.Array, w, *, bias=None, mode: PathMode = PathMode.EXACT,
                     interpret: bool = False) -> jax.Array:
  """sharq_dot on the fused Pallas kernels: x (..., K) · Wᵀ (+ bias) in x's dtype.

  Args:
    x: activations (..., K).
    w: a sharq-nvfp4 QuantizedWeight or a PackedWeight.
    bias: optional (N,) bias, added in float32.
    mode: PathMode.EXACT (the reference's two products; default) or PathMode.FAST.
    interpret: run in Pallas interpret mode (CPU tests).

  Raises:
    ValueError: the case is unsupported (the message says why).
  """
  reason = why_unsupported(x, w, interpret=interpret)
  if reason is not None:
    raise ValueError(f"sharq_dot_pallas: {reason}")
  return sharq_matmul(x, pack_weight(w), bias=bias, mode=PathMode(mode), out_dtype=x.dtype,
                      interpret=interpret)
