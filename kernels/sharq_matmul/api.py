"""Public entry points: sharq_gemm (prepared activations × packed weight) and
sharq_matmul (x → prep → GEMM), each jitted with a static `interpret` flag."""

from __future__ import annotations

import enum
import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from sharq_jax.kernels.sharq_matmul import (fragment_gemv_gpu, gemv_gpu, int8_gemv_gpu,
                                            mma_gemv_gpu, pallas_gpu)
from sharq_jax.kernels.sharq_matmul.config import (DenseGemmConfig, FragmentGemvConfig,
                                                   GemvConfig,
                                                   MmaGemvConfig, PackedGemmConfig,
                                                   default_dense_config,
                                                   default_fragment_gemv_config,
                                                   default_gemv_config,
                                                   default_int8_gemv_config,
                                                   default_mma_gemv_config,
                                                   default_packed_config)
from sharq_jax.kernels.sharq_matmul.packing import PackedWeight, expand_weight, rows_weight
from sharq_jax.kernels.sharq_prep import (PathLayout, PathMode, PrepConfig, Prepared,
                                          sharq_prep)


class GemmImpl(enum.Enum):
  """Which GEMM runs after the preparation."""

  GEMV = "gemv"  # Pallas, FP4 payload decoded in registers, CUDA-core FMAs (M <= 8)
  MMA_GEMV = "mma_gemv"  # the same in-register decode, products on mma.sync (M <= 8)
  FRAGMENT_GEMV = "fragment_gemv"  # mma.sync with each quad on one row's 64 K (M <= 8)
  # int8 mma.sync on 2·E2M1 codes, block scales on the sums (exact mode, M <= 8)
  INT8_GEMV = "int8_gemv"
  PACKED = "packed"  # Pallas, FP4 payload decoded in registers, tensor cores (small M)
  EXPANDED_PALLAS = "expanded_pallas"  # expand Ŵ' to float16 once, Pallas GEMM
  EXPANDED_XLA = "expanded_xla"  # expand Ŵ' to float16 once, XLA (cuBLAS) GEMM
  AUTO = "auto"  # by M and mode: GEMV, MMA_GEMV, INT8_GEMV, PACKED or EXPANDED_XLA

# H200 device times of the GEMMs (BENCHMARKS.md "Session 6" run 18 and "Session 7" runs
# 21-23, default tiles; 4096x14336 / 14336x4096): M = 1 GEMV 26.7 / 27.4 us, MMA GEMV
# with its prefetch queue 22.1 / 26.9; M = 2 GEMV 41.2 / 39.0, MMA GEMV (2 steps ahead)
# 29.8 / 29.4; M = 4 GEMV 86.1 / 64.0, MMA GEMV 51.5 / 52.0. At M = 8 the MMA GEMV took
# 96-98 us; PACKED's whole linear measured ~70-85 us in session 5 (another run), so
# PACKED keeps M >= 5 until one run times both. The GEMV is the fallback at M = 1
# where the MMA GEMV's tiles do not divide the weight.
GEMV_AUTO_MAX_M = 1
MMA_GEMV_AUTO_MAX_M = 4
# Exact mode at M = 3-4: the int8 GEMV (run 52, M = 4, tiled weights, 4096x14336 /
# 14336x4096: 35.0 / 46.7 us against the MMA GEMV's 52.0 / 56.4 and PACKED's 57.6 /
# 51.9; M = 3 not timed: the MMA GEMV took 45.7 / 49.3 us there in run 30, more than
# the int8 GEMV at M = 4). At M = 1-2 it was not faster (runs 50-51); at M = 8 PACKED
# was (run 54, 4096x14336: 57.9 against 66.6 us); M = 5-7 were not timed.
INT8_GEMV_AUTO_M = (3, 4)
PACKED_MAX_M = 64  # measured crossover on the H200 (BENCHMARKS.md)


def resolve_impl(impl: GemmImpl | str, m: int, n: int | None = None,
                 k: int | None = None,
                 mode: PathMode | str | None = PathMode.EXACT) -> GemmImpl:
  """The GEMM that runs for M tokens: impl itself, or AUTO's pick by M, the path mode
  and, where given, the weight's N and K. Where the 64-row, 64-K tiles divide N and K:
  in exact mode the int8 GEMV at M = 3-4 (INT8_GEMV_AUTO_M), else the MMA GEMV at
  M <= 4; otherwise the GEMV at M = 1 and PACKED up to M = 64. The default mode
  (EXACT) is what sharq_matmul runs in exact mode; sharq_gemm on activations already
  prepared as float16 paths corresponds to mode=None (the int8 GEMV reads
  PathLayout.INT8 only)."""
  impl = GemmImpl(impl)
  if impl is GemmImpl.AUTO:
    fits = n is None or mma_gemv_fits(n, k)
    lo, hi = INT8_GEMV_AUTO_M
    if mode is not None and PathMode(mode) is PathMode.EXACT and lo <= m <= hi and fits:
      return GemmImpl.INT8_GEMV
    if m <= MMA_GEMV_AUTO_MAX_M and fits:
      return GemmImpl.MMA_GEMV
    if m <= GEMV_AUTO_MAX_M:
      return GemmImpl.GEMV
    return GemmImpl.PACKED if m <= PACKED_MAX_M else GemmImpl.EXPANDED_XLA
  return impl


_IMPL_OF_CONFIG = {GemvConfig: (GemmImpl.GEMV,),
                   MmaGemvConfig: (GemmImpl.MMA_GEMV, GemmImpl.INT8_GEMV),
                   FragmentGemvConfig: (GemmImpl.FRAGMENT_GEMV,),
                   PackedGemmConfig: (GemmImpl.PACKED,),
                   DenseGemmConfig: (GemmImpl.EXPANDED_PALLAS,)}


class _GemvKernel(NamedTuple):
  """A GEMV kernel: it reads a nibble-plane layout and applies s·s_w itself."""

  run: Callable
  default_config: Callable  # (m, n, k, weight layout) -> config
  layout: PathLayout  # of the activation paths it reads


def _rows_only(default_config):
  """A default-config rule of a kernel that reads WeightLayout.ROWS only."""
  return lambda m, n, k, weight_layout: default_config(m, n, k)


_GEMVS = {GemmImpl.GEMV: _GemvKernel(gemv_gpu.gemv, _rows_only(default_gemv_config),
                                     PathLayout.GEMV),
          GemmImpl.MMA_GEMV: _GemvKernel(
              mma_gemv_gpu.mma_gemv,
              default_mma_gemv_config,
              PathLayout.GEMV),
          GemmImpl.FRAGMENT_GEMV: _GemvKernel(fragment_gemv_gpu.fragment_gemv,
                                              _rows_only(default_fragment_gemv_config),
                                              PathLayout.PLANES_64)}


def mma_gemv_fits(n: int, k: int | None) -> bool:
  """Whether the MMA GEMV's smallest tile (64 rows, 64 K) divides an (N, K) weight."""
  tile = MmaGemvConfig()
  return n % tile.block_n == 0 and (k is None or k % tile.block_k == 0)


def _impl_for(impl: GemmImpl, config, m: int, n: int | None = None,
              k: int | None = None, mode: PathMode | None = PathMode.EXACT) -> GemmImpl:
  """The kernel to run: a given config names its kernel (AUTO defers to it); a config
  of another kernel than the one asked for is an error, not silently reinterpreted."""
  if config is None:
    return resolve_impl(impl, m, n, k, mode)
  wanted = _IMPL_OF_CONFIG.get(type(config))
  if wanted is None:
    raise TypeError(f"sharq_gemm: config must be a GemvConfig, MmaGemvConfig, "
                    f"FragmentGemvConfig, PackedGemmConfig or DenseGemmConfig, got "
                    f"{type(config).__name__}")
  if impl is GemmImpl.AUTO:
    return wanted[0]
  if impl not in wanted:
    raise TypeError(f"sharq_gemm: impl={impl.value} cannot take a "
                    f"{type(config).__name__} (it configures "
                    f"{' or '.join(w.value for w in wanted)})")
  return impl


def prep_layout(impl: GemmImpl | str, m: int, config=None, n: int | None = None,
                k: int | None = None, mode: PathMode | str = PathMode.EXACT) -> PathLayout:
  """The PathLayout that the GEMM sharq_gemm runs for (impl, M tokens, config, the
  weight's N and K where given, the path mode) reads: prepare with it
  (sharq_prep(..., layout=)) and no conversion runs before the GEMM."""
  impl = _impl_for(GemmImpl(impl), config, m, n, k, PathMode(mode))
  if impl is GemmImpl.INT8_GEMV:
    if PathMode(mode) is not PathMode.EXACT:
      raise ValueError("impl=int8_gemv multiplies exact mode's two paths (E2M1 codes); "
                       "fast mode's Ŝ + R̂ is not one: use mode='exact' or another impl")
    return PathLayout.INT8
  gemv_kernel = _GEMVS.get(impl)
  return gemv_kernel.layout if gemv_kernel else PathLayout.MMA


def _xla_gemm(paths, w16, factor, bias, out_dtype):
  acc = None
  for p in paths:
    prod = jnp.dot(p, w16.T, preferred_element_type=jnp.float32)
    acc = prod if acc is None else acc + prod
  y = acc * factor
  if bias is not None:
    y = y + jnp.asarray(bias, jnp.float32)
  return y.astype(out_dtype)


@functools.partial(jax.jit, static_argnames=("out_dtype", "impl", "config", "interpret"))
def sharq_gemm(prepared: Prepared, w: PackedWeight, *, bias=None, out_dtype=jnp.float32,
               impl: GemmImpl = GemmImpl.AUTO,
               config: (GemvConfig | MmaGemvConfig | FragmentGemvConfig | PackedGemmConfig
                        | DenseGemmConfig
                        | None) = None,
               interpret: bool = False) -> jax.Array:
  """Y = s·s_w · Σ_p P_p · Ŵ'ᵀ (+ bias) for prepared activations (M, K) → (M, N).

  The GEMVs read paths in a nibble-plane layout (PathLayout.GEMV, or PLANES_64 for
  the fragment GEMV), the other kernels in PathLayout.MMA; paths in another layout are
  converted by XLA first. Every layout gives the same Y. The int8 GEMV reads only
  PathLayout.INT8 (exact mode; no other layout converts to it). The MMA and int8
  GEMVs read a weight in either WeightLayout; the other kernels read
  WeightLayout.ROWS, and a tiled weight is converted for them first (one extra pass
  over it).
  """
  m, k = prepared.paths[0].shape
  if k != w.k:
    raise ValueError(f"sharq_gemm: activations have K={k} but the weight has K={w.k}")
  # AUTO picks the int8 GEMV only for activations prepared for it (and, given an
  # MmaGemvConfig, runs it rather than converting them for the float16 MMA GEMV).
  int8_ready = prepared.layout is PathLayout.INT8
  asked = GemmImpl(impl)
  impl = _impl_for(asked, config, m, w.n, k, PathMode.EXACT if int8_ready else None)
  if (int8_ready and asked is GemmImpl.AUTO and isinstance(config, MmaGemvConfig)
      and m <= int8_gemv_gpu.INT8_GEMV_MAX_M):
    impl = GemmImpl.INT8_GEMV
  if impl not in (GemmImpl.MMA_GEMV, GemmImpl.INT8_GEMV):
    w = rows_weight(w)
  out_dtype = jnp.dtype(out_dtype)
  if impl is GemmImpl.INT8_GEMV:
    if prepared.layout is not PathLayout.INT8:
      raise ValueError("sharq_gemm: impl=int8_gemv reads activations prepared in "
                       "PathLayout.INT8 (sharq_prep(x, layout=PathLayout.INT8), exact "
                       f"mode), got PathLayout.{prepared.layout.name}")
    return int8_gemv_gpu.int8_gemv(
        prepared.paths, prepared.block_scales, w, act_scale=prepared.scale, bias=bias,
        out_dtype=out_dtype, interpret=interpret,
        config=config if config is not None else default_int8_gemv_config(m, w.n, k))
  if impl in _GEMVS:
    gemv_kernel = _GEMVS[impl]
    if prepared.layout is not gemv_kernel.layout:  # the kernel permutes column order
      prepared = prepared.in_mma_layout()
    return gemv_kernel.run(
        prepared.paths, w, act_scale=prepared.scale, bias=bias, out_dtype=out_dtype,
        config=(config if config is not None
                else gemv_kernel.default_config(m, w.n, k, w.layout)),
        planes=prepared.layout is gemv_kernel.layout, interpret=interpret)
  s_sw = prepared.scale * w.scale
  prepared = prepared.in_mma_layout()
  if impl is GemmImpl.PACKED:
    cfg = config if config is not None else default_packed_config(m, w.n, k)
    return pallas_gpu.packed_gemm(prepared.paths, w, s_sw * pallas_gpu.WEIGHT_FACTOR,
                                  bias=bias, out_dtype=out_dtype, config=cfg,
                                  interpret=interpret)
  # Ŵ'·2^-7 in float16, decoded once per call by bit moves; 2^7 goes to the epilogue.
  w16 = pallas_gpu.expand_weight_pallas(w, interpret=interpret)
  factor = s_sw * pallas_gpu.WEIGHT_FACTOR
  if impl is GemmImpl.EXPANDED_PALLAS:
    cfg = config if config is not None else default_dense_config(m, w.n, k)
    return pallas_gpu.dense_gemm(prepared.paths, w16, factor, bias=bias,
                                 out_dtype=out_dtype, config=cfg, interpret=interpret)
  return _xla_gemm(prepared.paths, w16, factor, bias, out_dtype)


@functools.partial(jax.jit, static_argnames=("eps", "mode", "out_dtype", "impl",
                                             "prep_config", "gemm_config", "interpret"))
def sharq_matmul(x: jax.Array, w: PackedWeight, *, bias=None, gamma=None,
                 eps: float = 1e-6, mode: PathMode = PathMode.EXACT, out_dtype=None,
                 impl: GemmImpl = GemmImpl.AUTO, prep_config: PrepConfig | None = None,
                 gemm_config=None, interpret: bool = False) -> jax.Array:
  """SharQ linear layer on the fused kernels: x (..., K) → (..., N).

  Y = s·s_w·(Ŝ Ŵ'ᵀ + R̂ Ŵ'ᵀ) + bias, with the optional RMSNorm (gamma) applied to x
  first. mode=EXACT keeps the two products in one float32 accumulator (what the XLA
  reference computes, up to summation order); mode=FAST rounds Ŝ + R̂ to float16 once
  and runs one product.

  Args:
    x: activations (..., K), K a multiple of 32.
    w: PackedWeight (pack_weight of a sharq-nvfp4 weight).
    bias: optional (N,) bias added in float32.
    gamma, eps: optional RMSNorm weight (K,) and epsilon.
    mode: PathMode.EXACT or PathMode.FAST.
    out_dtype: output dtype (x's dtype if None).
    impl: GEMM implementation (GemmImpl.AUTO picks by M and mode).
    prep_config, gemm_config: tile configs (defaults by shape).
    interpret: run the Pallas kernels in interpret mode (CPU tests).
  """
  k = x.shape[-1]
  if k != w.k:
    raise ValueError(f"sharq_matmul: x has K={k} (shape {x.shape}) but the weight has "
                     f"K={w.k}")
  prepared = sharq_prep(x, gamma=gamma, eps=eps, mode=PathMode(mode), config=prep_config,
                        layout=prep_layout(impl, x.size // k, gemm_config, w.n, k, mode),
                        interpret=interpret)
  y = sharq_gemm(prepared, w, bias=bias, out_dtype=out_dtype or x.dtype, impl=impl,
                 config=gemm_config, interpret=interpret)
  return y.reshape(*x.shape[:-1], w.n)


def sharq_gemm_reference(prepared: Prepared, w: PackedWeight, *, bias=None,
                         out_dtype=jnp.float32) -> jax.Array:
  """XLA reference of sharq_gemm: float32 HIGHEST products of each path with Ŵ'."""
  prepared = prepared.in_mma_layout()
  w32 = expand_weight(w, jnp.float32)
  acc = None
  for p in prepared.paths:
    prod = jnp.einsum("mk,nk->mn", p.astype(jnp.float32), w32,
                      precision=jax.lax.Precision.HIGHEST,
                      preferred_element_type=jnp.float32)
    acc = prod if acc is None else acc + prod
  y = acc * (prepared.scale * w.scale)
  if bias is not None:
    y = y + jnp.asarray(bias, jnp.float32)
  return y.astype(out_dtype)
