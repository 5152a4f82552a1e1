"""XLA reference of the fused SharQ preparation (sharq-nvfp4 activations).

The decomposition itself is the core library's (sharq_jax.decompose); this module adds
the optional RMSNorm in the model's order of casts and the GEMM operand layout:

    X_n = γ · cast(X · rstd)            (cast to X's dtype, as sharq_jax.models does)
    s, Ŝ, R̂ = decompose(X_n)            (4:8-pairs backbone, NVFP4 32 / residual 16)
    exact mode:  paths = (f16(Ŝ), f16(R̂))    (exact: E2M1 code × E4M3 scale)
    fast mode:   paths = (f16(Ŝ + R̂),)       (one rounding of the float32 sum)
"""

from __future__ import annotations

import dataclasses
import enum

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

from sharq_jax import decompose as dec
from sharq_jax.formats import NVFP4
from sharq_jax.formats.nvfp4 import scale_from_amax  # the core formula, re-exported
from sharq_jax.masks import NMPattern

SHARQ_NVFP4 = dec.SharQConfig(pattern=NMPattern(4, 8, unit=2), backbone=NVFP4(32),
                              residual=NVFP4(16), tensor_scale=True)
K_MULTIPLE = SHARQ_NVFP4.k_multiple  # 32


class PathMode(enum.Enum):
  """How the two activation paths reach the GEMM."""

  EXACT = "exact"  # Ŝ and R̂ separately: two products into one float32 accumulator
  FAST = "fast"  # Ŝ + R̂ rounded once to float16: one product

  @property
  def num_paths(self) -> int:
    return 2 if self is PathMode.EXACT else 1


class PathLayout(enum.Enum):
  """How the prepared paths are stored, for the GEMM kernel that reads them: float16
  in a column order, or (INT8) as int8 codes with their block scales apart."""

  # (M, K), column k of X in column k: the operand of the tensor-core and XLA GEMMs.
  MMA = "mma"
  # (M, K), per 32-block the 16 even-K columns then the 16 odd-K ones: the order of the
  # low and high nibbles of the packed weight's 16 bytes per block, read by the GEMV.
  # (A float32 variant, saving the GEMV one conversion per weight and path, was slower
  # on the N ≥ K shapes in the one cross-run comparison made: kernels/NOTES.md, v4.)
  GEMV = "gemv"
  # (M, K), per 64-block the 32 even-K columns then the 32 odd-K ones: the nibble planes
  # of the 32 code bytes that one quad of lanes of the fragment GEMV loads from a row.
  PLANES_64 = "planes64"
  # (M, K) int8, column order: 2 × each path's E2M1 values (exact mode only), with the
  # paths' float32 block scales per 16 columns in Prepared.block_scales (the backbone's
  # 32-block scale twice): path = int8 / 2 · scale. What the int8 GEMV reads.
  INT8 = "int8"

  @property
  def plane_block(self) -> int | None:
    """K columns per nibble-plane block (None: column order)."""
    return {PathLayout.GEMV: 32, PathLayout.PLANES_64: 64}.get(self)


def _to_planes(path: jax.Array, block: int) -> jax.Array:
  m, k = path.shape
  return path.reshape(m, k // block, block // 2, 2).transpose(0, 1, 3, 2).reshape(m, k)


def _from_planes(path: jax.Array, block: int) -> jax.Array:
  m, k = path.shape
  return path.reshape(m, k // block, 2, block // 2).transpose(0, 1, 3, 2).reshape(m, k)


def _column_permutation(layout: PathLayout) -> PathLayout:
  layout = PathLayout(layout)
  if layout is PathLayout.INT8:
    raise ValueError("PathLayout.INT8 is not a column order of float16 paths: prepare "
                     "with sharq_prep(..., layout=PathLayout.INT8), and convert with "
                     "Prepared.in_mma_layout()")
  return layout


def to_layout(path: jax.Array, layout: PathLayout) -> jax.Array:
  """An (M, K) path in PathLayout.MMA → `layout` (a permutation inside each plane
  block; K must be a multiple of it)."""
  block = _column_permutation(layout).plane_block
  return path if block is None else _to_planes(path, block)


def to_gemv_layout(path: jax.Array) -> jax.Array:
  """An (M, K) path in PathLayout.MMA → PathLayout.GEMV (a permutation per 32-block)."""
  return _to_planes(path, 32)


def to_mma_layout(path: jax.Array, layout: PathLayout = PathLayout.GEMV) -> jax.Array:
  """Inverse of to_layout: an (M, K) path in `layout` (default PathLayout.GEMV) →
  PathLayout.MMA."""
  block = _column_permutation(layout).plane_block
  return path if block is None else _from_planes(path, block)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Prepared:
  """Activations prepared for the SharQ GEMM.

  paths: float16 (M, K) arrays in the X' = X_n / s domain (2 in exact mode, 1 in fast),
    their columns ordered as `layout` says; in PathLayout.INT8, int8 (M, K) arrays of
    2 × the E2M1 values.
  scale: the float32 tensor scale s, shape ().
  rstd: float32 (M, 1) RMSNorm reciprocal std, or None without RMSNorm.
  block_scales: PathLayout.INT8 only: per path the float32 (M, K/16) block scales.
  """

  paths: tuple
  scale: jax.Array
  rstd: jax.Array | None
  mode: PathMode = dataclasses.field(metadata=dict(static=True))
  layout: PathLayout = dataclasses.field(default=PathLayout.MMA,
                                         metadata=dict(static=True))
  block_scales: tuple | None = None

  def in_mma_layout(self) -> "Prepared":
    """The same activations with their paths in PathLayout.MMA (a no-op if they are):
    float16, column order (from PathLayout.INT8 exactly: int8 / 2 · scale)."""
    if self.layout is PathLayout.MMA:
      return self
    if self.layout is PathLayout.INT8:
      return dataclasses.replace(
          self, paths=tuple(int8_path_values(c, d).astype(jnp.float16)
                            for c, d in zip(self.paths, self.block_scales)),
          layout=PathLayout.MMA, block_scales=None)
    return dataclasses.replace(
        self, paths=tuple(to_mma_layout(p, self.layout) for p in self.paths),
        layout=PathLayout.MMA)


def int8_path_values(codes: jax.Array, block_scales: jax.Array) -> jax.Array:
  """A PathLayout.INT8 path as float32 values: codes / 2 · its block's scale."""
  d = jnp.repeat(jnp.asarray(block_scales, jnp.float32), 16, axis=-1)
  return codes.astype(jnp.float32) * np.float32(0.5) * d


def rms_stats(x2: jax.Array, eps: float) -> jax.Array:
  """rstd = rsqrt(mean(x²) + eps) per row, float32 (M, 1)."""
  xf = x2.astype(jnp.float32)
  return jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + eps)


def _round_to(v: jax.Array, dtype) -> jax.Array:
  """float32 v rounded to `dtype` (RNE) and back, as float32.

  bfloat16 uses reduce_precision: XLA on GPU (allow_excess_precision) may drop a
  float32 -> bfloat16 -> float32 convert pair inside a fusion, which would change the
  values the amax pass sees relative to the kernel, which really rounds.
  """
  dtype = jnp.dtype(dtype)
  if dtype == jnp.float32:
    return v
  if dtype == jnp.bfloat16:
    return jax.lax.reduce_precision(v, exponent_bits=8, mantissa_bits=7)
  return v.astype(dtype).astype(jnp.float32)


def rms_apply(x2: jax.Array, gamma: jax.Array, rstd: jax.Array) -> jax.Array:
  """γ · cast(x · rstd) in x's dtype (the order of sharq_jax.models.llama.RMSNorm)."""
  y = _round_to(x2.astype(jnp.float32) * rstd, x2.dtype)
  return _round_to(gamma.astype(jnp.float32) * y, x2.dtype).astype(x2.dtype)


def finite_amax(xn: jax.Array) -> jax.Array:
  """max |x| over the finite entries of xn (0 if none), float32 ()."""
  xf = xn.astype(jnp.float32)
  return jnp.max(jnp.where(jnp.isfinite(xf), jnp.abs(xf), 0.0), initial=0.0)


def tensor_scale(xn: jax.Array) -> jax.Array:
  """The tensor scale s of xn: scale_from_amax(finite_amax(xn))."""
  return scale_from_amax(finite_amax(xn))


def sharq_prep_reference(x: jax.Array, *, gamma: jax.Array | None = None,
                         eps: float = 1e-6, rstd: jax.Array | None = None,
                         mode: PathMode | str = PathMode.EXACT,
                         layout: PathLayout = PathLayout.MMA) -> Prepared:
  """Reference preparation of x (..., K) through the core decomposition.

  Args:
    x: activations (..., K), K a multiple of 32.
    gamma: RMSNorm weight (K,), or None for no normalisation.
    eps: RMSNorm epsilon.
    rstd: optional precomputed (M, 1) rstd (tests pass the kernel's, so that both
      sides normalise identically; a different reduction order may move it by an ulp).
    mode: PathMode.EXACT or PathMode.FAST.
    layout: PathLayout.MMA (float16 paths) or PathLayout.INT8 (exact mode: the core
      decomposition's E2M1 codes doubled as int8, its E4M3 block scales as float32).
  """
  mode, layout = PathMode(mode), PathLayout(layout)
  k = x.shape[-1]
  x2 = x.reshape(-1, k)
  if gamma is not None:
    if rstd is None:
      rstd = rms_stats(x2, eps)
    x2 = rms_apply(x2, gamma, rstd)
  else:
    rstd = None
  d = dec.decompose(x2, SHARQ_NVFP4, name="sharq_prep")
  if layout is PathLayout.INT8:
    if mode is not PathMode.EXACT:
      raise ValueError("sharq_prep_reference: PathLayout.INT8 needs exact mode")
    qs = (d.backbone, d.residual)
    return Prepared(
        paths=tuple((q.codes.astype(jnp.float32) * 2.0).astype(jnp.int8) for q in qs),
        scale=d.tensor_scale, rstd=rstd, mode=mode, layout=layout,
        block_scales=tuple(jnp.repeat(q.scales.astype(jnp.float32), q.fmt.block_size // 16,
                                      axis=-1) for q in qs))
  if layout is not PathLayout.MMA:
    raise ValueError(f"sharq_prep_reference: layout {layout.value}: use MMA or INT8 "
                     "(to_layout permutes MMA paths)")
  s_hat, r_hat = d.paths()
  if mode is PathMode.EXACT:
    paths = (s_hat.astype(jnp.float16), r_hat.astype(jnp.float16))
  else:
    paths = ((s_hat + r_hat).astype(jnp.float16),)
  return Prepared(paths=paths, scale=d.tensor_scale, rstd=rstd, mode=mode)


# ---------------------------------------------------------------------------------
# NumPy contract reference: docs/NUMERICS.md step by step with IEEE float32 NumPy
# arithmetic (NumPy never rewrites a division into a reciprocal multiplication, which
# XLA does for divisions by constants and, outside fusions, by broadcast scalars).
# The kernels must match it bit for bit.
# ---------------------------------------------------------------------------------

def _np_e2m1(q: np.ndarray) -> np.ndarray:
  mag = np.abs(q)
  idx = np.zeros(q.shape, np.int32)
  for bound, strict in ((0.25, False), (0.75, True), (1.25, False), (1.75, True),
                        (2.5, False), (3.5, True), (5.0, False)):
    idx += (mag >= bound) if strict else (mag > bound)
  vals = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6], np.float32)[idx]
  return np.where(np.signbit(q), -vals, vals).astype(np.float32)


def _np_quantize(v: np.ndarray, block: int) -> np.ndarray:
  """DQ(Q(v)) with NVFP4 blocks of `block` along the last axis, tensor scale 1."""
  shape = v.shape
  b = v.reshape(*shape[:-1], shape[-1] // block, block)
  finite = np.isfinite(b)
  amax = np.max(np.where(finite, np.abs(b), np.float32(0)), axis=-1, keepdims=True)
  with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
    ratio = np.minimum(amax / np.float32(6.0), np.float32(448.0)).astype(np.float32)
    d = ratio.astype(ml_dtypes.float8_e4m3fn).astype(np.float32)
    d = np.where((amax > 0) & (d == 0), np.float32(2.0**-9), d).astype(np.float32)
    q = np.where(d > 0, b / np.where(d > 0, d, np.float32(1)), np.float32(0))
    out = (_np_e2m1(q.astype(np.float32)) * d).astype(np.float32)
  out = np.where(np.all(finite, axis=-1, keepdims=True), out, np.float32(np.nan))
  return out.reshape(shape)


def _np_pairs_mask(xp: np.ndarray) -> np.ndarray:
  mag = np.abs(xp)
  score = np.where(np.isnan(mag), np.float32(np.inf), mag)
  pair = score.reshape(*xp.shape[:-1], xp.shape[-1] // 8, 4, 2).max(axis=-1)
  idx = np.arange(4)
  s_i, s_j = pair[..., :, None], pair[..., None, :]
  beats = (s_j > s_i) | ((s_j == s_i) & (idx[None, :] < idx[:, None]))
  keep = beats.sum(axis=-1) < 2
  return np.repeat(keep, 2, axis=-1).reshape(xp.shape)


def sharq_prep_numpy(x, *, gamma=None, rstd=None, scale=None,
                     mode: PathMode | str = PathMode.EXACT):
  """(paths as float32 NumPy arrays, s) per NUMERICS.md; rstd must be given with gamma.

  `scale` overrides the tensor scale s (to check the fused pass on its own when the
  amax pass and this function disagree on the last bit of a normalised value).
  """
  mode = PathMode(mode)
  x2 = np.asarray(jnp.asarray(x).reshape(-1, x.shape[-1]))
  if gamma is not None:
    x2 = np.asarray(rms_apply(jnp.asarray(x2), jnp.asarray(gamma), jnp.asarray(rstd)))
  xf = x2.astype(np.float32)
  amax = np.max(np.where(np.isfinite(xf), np.abs(xf), np.float32(0)), initial=np.float32(0))
  s = np.float32(amax / np.float32(2688.0)) if amax > 0 else np.float32(1.0)
  if scale is not None:
    s = np.float32(np.asarray(scale, np.float32))
  with np.errstate(invalid="ignore", over="ignore"):
    xp = (xf / s).astype(np.float32)
    sparse = np.where(_np_pairs_mask(xp), xp, np.float32(0)).astype(np.float32)
    s_hat = _np_quantize(sparse, 32)
    r_hat = _np_quantize((xp - s_hat).astype(np.float32), 16)
    if mode is PathMode.EXACT:
      paths = (s_hat.astype(np.float16), r_hat.astype(np.float16))
    else:
      paths = ((s_hat + r_hat).astype(np.float32).astype(np.float16),)
  return tuple(p.astype(np.float32) for p in paths), s
