"""Tile configurations of the SharQ GEMM kernels."""

from __future__ import annotations

import dataclasses
import operator
import enum

from sharq_jax.kernels.sharq_matmul.packing import WeightLayout


class Interleave(enum.Enum):
  """How the decoded even/odd-K weight halves meet the activation."""

  JOIN = "join"  # interleave the two nibble planes in registers (tt.join + reshape)
  STRIDED = "strided"  # load even and odd activation columns separately (stride 2)


class Orient(enum.Enum):
  """Which operand is the MMA's M side."""

  XW = "xw"  # acc (bm, bn) = X · Wᵀ   (tokens on the MMA M side)
  WX = "wx"  # acc (bn, bm) = W · Xᵀ   (weights on the M side: wgmma-sized for tiny M)


def _check_tiles(n: int, k: int, block_n: int, k_step: int, k_step_name: str) -> None:
  """N must split into block_n rows and K into k_step columns, or ValueError."""
  if n % block_n:
    raise ValueError(f"N={n} is not a multiple of block_n={block_n}")
  if k % k_step:
    raise ValueError(f"K={k} is not a multiple of {k_step_name}={k_step}")


def _pow2(name, v):
  if v <= 0 or v & (v - 1):
    raise ValueError(f"{name} must be a power of two, got {v}")


def _steps(name: str, v) -> int:
  try:
    depth = operator.index(v)
  except TypeError:
    depth = -1
  if depth < 0:
    raise ValueError(f"{name} must be a number of K steps >= 0, got {v!r}")
  return int(depth)


def _prefetch_depth(cfg) -> None:
  """Checks the prefetch fields and stores them as plain ints: prefetch True -> 1;
  prefetch_activations True -> the codes' depth, False -> 0."""
  depth = _steps("prefetch", cfg.prefetch)
  acts = cfg.prefetch_activations
  if acts is True and not depth:
    raise ValueError("prefetch_activations=True means the codes' depth, but prefetch is 0; "
                     "give the activations' own number of steps")
  acts = (depth if acts else 0) if isinstance(acts, bool) else _steps(
      "prefetch_activations", acts)
  object.__setattr__(cfg, "prefetch", depth)
  object.__setattr__(cfg, "prefetch_activations", acts)


def _check_queued_gemv(cfg, warps: tuple) -> None:
  """Checks num_warps (one of `warps`), split_k and the prefetch depths of a GEMV
  config with prefetch queues."""
  if cfg.num_warps not in warps:
    raise ValueError(f"num_warps must be one of {warps}, got {cfg.num_warps}")
  if cfg.split_k < 1:
    raise ValueError(f"split_k must be >= 1, got {cfg.split_k}")
  _prefetch_depth(cfg)


def _prefetch_tag(cfg) -> str:
  """p / pN: the codes' depth; a / aN: the activations' (a: the same depth)."""
  d, a = cfg.prefetch, cfg.prefetch_activations
  codes = "" if not d else ("p" if d == 1 else f"p{d}")
  return codes + ("" if not a else ("a" if a == d else f"a{a}"))


@dataclasses.dataclass(frozen=True)
class PackedGemmConfig:
  """Packed-weight kernel: the FP4 payload is decoded in registers, block_k K at a time.

  Grid (cdiv(M, block_m), N / block_n, split_k); each program streams its weight tile
  once for all activation paths. split_k > 1 writes float32 partials summed by XLA.
  """

  block_m: int = 16
  block_n: int = 128
  block_k: int = 256
  split_k: int = 1
  num_warps: int = 4
  num_stages: int = 3
  interleave: Interleave = Interleave.JOIN
  orient: Orient = Orient.XW
  asm_decode: bool = True  # PTX bit-move nibble decode (GPU only)

  def __post_init__(self):
    _pow2("block_m", self.block_m)
    _pow2("block_n", self.block_n)
    _pow2("block_k", self.block_k)
    if self.block_k < 32:
      raise ValueError(f"block_k must be >= 32, got {self.block_k}")
    if self.block_m < 16 or self.block_n < 16:
      raise ValueError("block_m and block_n must be >= 16 (tensor-core tiles)")
    object.__setattr__(self, "interleave", Interleave(self.interleave))
    object.__setattr__(self, "orient", Orient(self.orient))

  def check(self, m: int, n: int, k: int) -> None:
    """Raises ValueError if this config cannot tile (m, n, k)."""
    del m
    _check_tiles(n, k, self.block_n, self.split_k * self.block_k, "split_k·block_k")


@dataclasses.dataclass(frozen=True)
class DenseGemmConfig:
  """Expanded-weight kernel: float16 Ŵ' tiles, all paths into one accumulator."""

  block_m: int = 128
  block_n: int = 128
  block_k: int = 64
  num_warps: int = 8
  num_stages: int = 3

  def __post_init__(self):
    for f in ("block_m", "block_n", "block_k"):
      _pow2(f, getattr(self, f))

  def check(self, m: int, n: int, k: int) -> None:
    del m
    _check_tiles(n, k, self.block_n, self.block_k, "block_k")


@dataclasses.dataclass(frozen=True)
class GemvConfig:
  """CUDA-core kernel for a handful of tokens (M <= GEMV_MAX_M): no tensor cores.

  Grid (N / block_n, split_k). Each program decodes (block_n, block_k) weights per
  step in whatever register layout the load gives them and multiplies them with every
  token of every path by FMAs, so no weight value ever moves between threads; the
  sums over K are reduced once, after the loop.
  """

  block_n: int = 16
  block_k: int = 256
  split_k: int = 1
  num_warps: int = 4
  num_stages: int = 3
  # K steps whose weight bytes are loaded ahead of the current step's arithmetic (0 or
  # False: none; True = 1: two steps in flight).
  prefetch: int = 0
  # K steps whose activations are loaded ahead (0 or False: at their step; True: as
  # deep as the weights).
  prefetch_activations: int = 0
  # Split the block_n rows into this many groups that share each thread's activation
  # loads and float32 conversions (gemv_gpu); a power of two dividing block_n.
  row_groups: int = 1

  def __post_init__(self):
    _pow2("block_n", self.block_n)
    _pow2("block_k", self.block_k)
    if self.block_k < 32:
      raise ValueError(f"block_k must be >= 32, got {self.block_k}")
    if self.split_k < 1:
      raise ValueError(f"split_k must be >= 1, got {self.split_k}")
    _pow2("row_groups", self.row_groups)
    _prefetch_depth(self)
    if self.block_n % self.row_groups:
      raise ValueError(f"row_groups={self.row_groups} must divide block_n={self.block_n}")

  def tag(self) -> str:
    """Short name of the tile (the kernel's name in profiles carries it)."""
    return (f"n{self.block_n}k{self.block_k}s{self.split_k}w{self.num_warps}"
            f"{_prefetch_tag(self)}{f'g{self.row_groups}' if self.row_groups > 1 else ''}")

  def check(self, m: int, n: int, k: int) -> None:
    """Raises ValueError if this config cannot tile (m, n, k)."""
    if m > GEMV_MAX_M:
      raise ValueError(f"the GEMV kernel takes M <= {GEMV_MAX_M} tokens, got M={m}")
    _check_tiles(n, k, self.block_n, self.split_k * self.block_k, "split_k·block_k")


# One float32 accumulator per token and path lives in registers for the whole loop.
GEMV_MAX_M = 8


@dataclasses.dataclass(frozen=True)
class MmaGemvConfig:
  """Tensor-core GEMV (mma_gemv_gpu) for M <= MMA_GEMV_MAX_M tokens, N and K multiples
  of 64.

  Grid (N / (16·num_warps), split_k). A program holds 16·num_warps weight rows in two
  row groups and steps through its K range 64 at a time; per step each thread decodes
  8 code bytes per group and runs one mma.sync group per two activation columns
  (path, token). num_warps is 4 or 8 (the 32 lanes of a warp must span rows only, see
  mma_gemv_gpu); float32 partials per K split are summed by XLA.
  """

  split_k: int = 4
  num_warps: int = 4
  # K steps whose codes (bytes or words) are loaded ahead of the current step's MMAs
  # (0: none).
  prefetch: int = 1
  # K steps whose activations are loaded ahead (0 or False: at their step, an L2 round
  # trip on every step's critical path; True: as deep as the codes). Their own depth,
  # because a queued step of activations costs ~16 registers per thread.
  prefetch_activations: int = 0
  # Confine a NaN/Inf weight block's NaN to its own row's outputs without relying on
  # the tensor cores' NaN·0 (a per-row flag through the K loop; 1.4x slower at M = 1 on
  # the H200, run 25). Off: the H200's mma.sync gave the reference's NaN rows anyway in
  # every check of runs 26-30, which the PTX ISA does not promise (mma_gemv_gpu).
  isolate_nan_rows: bool = False
  # Load and queue the code bytes as 32-bit words, unpacked to bytes at their step:
  # Triton keeps a loaded byte tile one byte per register, so a queued step costs ~4x
  # the registers of its words.
  queue_words: bool = False
  # A CTA barrier after each step's loads (common.stream_queues' after_loads): without
  # it ptxas moves queued loads down next to their first use, so in a loop-free
  # program (prefetch >= its steps) every step waited a full HBM round trip
  # (kernels/NOTES.md v13).
  pin_loads: bool = False
  num_stages: int = 1

  block_k = 64  # K per step: two 32-blocks (the tile of the prototype the H200 checked)

  def __post_init__(self):
    _check_queued_gemv(self, (4, 8))

  @property
  def block_n(self) -> int:
    return 16 * self.num_warps

  def tag(self) -> str:
    """Short name of the tile (the kernel's name in profiles carries it)."""
    return (f"n{self.block_n}s{self.split_k}{_prefetch_tag(self)}"
            f"{'i' if self.isolate_nan_rows else ''}"
            f"{'w' if self.queue_words else ''}{'b' if self.pin_loads else ''}")

  def check(self, m: int, n: int, k: int) -> None:
    """Raises ValueError if this config cannot tile (m, n, k)."""
    if m > MMA_GEMV_MAX_M:
      raise ValueError(f"the MMA GEMV takes M <= {MMA_GEMV_MAX_M} tokens, got M={m}")
    _check_tiles(n, k, self.block_n, self.split_k * self.block_k, "split_k·block_k")


@dataclasses.dataclass(frozen=True)
class FragmentGemvConfig:
  """Tensor-core GEMV in the mma.sync fragment layout (fragment_gemv_gpu) for M <=
  FRAGMENT_GEMV_MAX_M tokens, N a multiple of 16·num_warps, K of 64·split_k.

  Grid (N / (16·num_warps), split_k), num_warps 1, 2, 4 or 8. Each warp holds 16
  weight rows in two groups of 8 (rows g and g+8 of the MMA's A); a step is 64 K, the
  32 code bytes a quad of lanes loads from one row. float32 partials per K split are
  summed by XLA.
  """

  split_k: int = 4
  num_warps: int = 4
  # K steps whose codes and scales are loaded ahead of the current step's MMAs.
  prefetch: int = 1
  # K steps whose activations are loaded ahead (False: at their step; True: as deep as
  # the codes).
  prefetch_activations: int = 0
  # Load and queue the code bytes as 32-bit words (unpacked at their step): a queued
  # step of words costs a quarter of the registers of bytes.
  queue_words: bool = True
  num_stages: int = 1

  block_k = 64  # K per step: the 32 code bytes of a row that one quad of lanes loads

  def __post_init__(self):
    _check_queued_gemv(self, (1, 2, 4, 8))

  @property
  def block_n(self) -> int:
    """Weight rows per program: 16 per warp."""
    return 16 * self.num_warps

  def tag(self) -> str:
    """Short name of the tile (the kernel's name in profiles carries it)."""
    return (f"n{self.block_n}s{self.split_k}{_prefetch_tag(self)}"
            f"{'w' if self.queue_words else ''}")

  def check(self, m: int, n: int, k: int) -> None:
    """Raises ValueError if this config cannot tile (m, n, k)."""
    if m > FRAGMENT_GEMV_MAX_M:
      raise ValueError(f"the fragment GEMV takes M <= {FRAGMENT_GEMV_MAX_M} tokens, "
                       f"got M={m}")
    _check_tiles(n, k, self.block_n, self.split_k * self.block_k, "split_k·block_k")


# One float32 accumulator fragment (8 registers) per token, and one queued step of
# activations costs 8 registers per path and token.
FRAGMENT_GEMV_MAX_M = 8


# Two activation columns per MMA group: M groups of 4 MMAs per step in exact mode. The
# prototype was checked on the H200 up to M = 9 (run 18).
MMA_GEMV_MAX_M = 8

NUM_SMS_H200 = 132


def default_packed_config(m: int, n: int, k: int) -> PackedGemmConfig:
  """Small-M (decode) config, from the H200 sweep (kernels/NOTES.md, v2).

  block_k = 128 (larger K tiles spill registers), K split until the grid covers the
  132 SMs about twice (split chosen on 256-wide K granularity).
  """
  block_m = 16 if m <= 16 else (32 if m <= 32 else 64)
  block_n = 128
  while n % block_n and block_n > 16:
    block_n //= 2
  gran = 256
  while k % gran and gran > 32:
    gran //= 2
  tiles = -(-m // block_m) * (n // block_n)
  split = 1
  while (tiles * split < 2 * NUM_SMS_H200 and k % (2 * split * gran) == 0
         and k // (2 * split) >= 2 * gran):
    split *= 2
  return PackedGemmConfig(block_m=block_m, block_n=block_n, block_k=min(128, gran),
                          split_k=split)


def default_dense_config(m: int, n: int, k: int) -> DenseGemmConfig:
  """Large-M config over the expanded float16 weight."""
  block_n = 128
  while n % block_n and block_n > 16:
    block_n //= 2
  block_k = 64
  while k % block_k and block_k > 16:
    block_k //= 2
  block_m = 128 if m >= 128 else max(16, 1 << (max(m, 1) - 1).bit_length())
  return DenseGemmConfig(block_m=block_m, block_n=block_n, block_k=block_k)


def default_gemv_config(m: int, n: int, k: int) -> GemvConfig:
  """GEMV tiles from the H200 device-time sweep (BENCHMARKS.md, "Session 5"): 32 weight
  rows in 2 row groups, 128 K per step, K split 16 ways, 4 warps, at both big Llama
  shapes and M = 1, 2 (4096×14336: 26.2 / 40.9 µs; 14336×4096 with the weight
  prefetch: 27.2 / 38.7 µs). The prefetch helped where K > N and was mixed where
  N ≥ K. Other shapes take the same rule, unswept.

  Each thread keeps block_n·block_k/(32·num_warps) = 32 float32 sums per token (256 at
  M = 8, where AUTO runs the tensor-core kernel instead).
  """
  del m
  block_n, block_k, target = 32, 128, 16
  while n % block_n and block_n > 1:
    block_n //= 2
  while k % block_k and block_k > 32:
    block_k //= 2
  split = 1
  while split < target and k % (2 * split * block_k) == 0:
    split *= 2
  return GemvConfig(block_n=block_n, block_k=block_k, split_k=split, num_warps=4,
                    prefetch=k > n, row_groups=min(2, block_n))


def default_mma_gemv_config(m: int, n: int, k: int,
                            weight_layout: WeightLayout = WeightLayout.ROWS
                            ) -> MmaGemvConfig:
  """MMA GEMV tile from the H200 probes (BENCHMARKS.md, "Session 7" runs 21-22 and
  "Session 8" runs 26, 27 and 30, device time, 4096x14336 / 14336x4096): 64 rows (4 warps).

  M = 1: K split until the grid has >= 448 programs (~3.4 per SM: split 2 / 8), the
  code words 4 steps ahead, with the activations where the split is <= 4 (21.9 / 21.3
  us; the session-7 byte queues 22.2 / 26.7). M = 2: split 8, code words 4 ahead and
  the activations 1 where a program has >= 16 steps, else 2 ahead (25.3 against 28.7
  us at 14336x4096; 28.4 against 29.6 at 4096x14336). M >= 3: split 8, one step of
  code words ahead (run 30: M = 3 45.7 / 49.3 us, bytes 50.0 / 56.9; M = 4 equal;
  deeper queues cost registers there: 61-63 against 52-54 us two ahead at M = 4).
  Splits shrink where K needs it; N must be a multiple of 64 (check() says so
  otherwise).

  A weight in WeightLayout.TILES_64 at M = 1: split 16, code words 4 ahead and the
  activations 1, pinned by a CTA barrier (pin_loads; run 57: 18.2 / 18.0 us against
  18.2 / 18.9 without the activations queued, split 16 unpinned 18.6 / 20.1 and the
  former split 8 unpinned 19.4 / 20.7; run 56: split 8 pinned 21.6 / 21.3; run 46
  chose split 8 over 2 and 4 unpinned).
  At M >= 2 the same tiles as rows (run 46, M = 2: 24.6 / 22.8 us tiled against 28.4 /
  25.3)."""
  if m == 1 and WeightLayout(weight_layout) is WeightLayout.TILES_64:
    return MmaGemvConfig(split_k=_split_fitting_k(_TILED_M1_SPLIT, k, MmaGemvConfig()),
                         prefetch=4, prefetch_activations=1, queue_words=True,
                         pin_loads=True)
  split = _gemv_split(m, n, k, MmaGemvConfig())
  if m == 1:
    return MmaGemvConfig(split_k=split, prefetch=4, prefetch_activations=4 * (split <= 4),
                         queue_words=True)
  if m == 2:
    if k // (split * MmaGemvConfig.block_k) >= 16:
      return MmaGemvConfig(split_k=split, prefetch=4, prefetch_activations=1,
                           queue_words=True)
    return MmaGemvConfig(split_k=split, prefetch=2, queue_words=True)
  return MmaGemvConfig(split_k=split, prefetch=1, queue_words=True)


def default_int8_gemv_config(m: int, n: int, k: int) -> MmaGemvConfig:
  """Int8 GEMV tile (int8_gemv_gpu; either weight layout): 64 rows, K split 16 (fewer
  where K needs it), code words 4 steps ahead (run 51, tiled weights, 4096x14336 /
  14336x4096: split 16 took 18.3 / 21.3 us at M = 1 and 22.2 / 24.5 at M = 2 against
  split 8's 19.7 / 21.9 and 29.0 / 30.9; run 52 at M = 4: 35.0 / 46.7 against split 8
  with the activations one step ahead, 38.8 / 46.4)."""
  del m, n
  return MmaGemvConfig(split_k=_split_fitting_k(16, k, MmaGemvConfig()), prefetch=4,
                       queue_words=True)


# Programs the M = 1 grid aims for: enough that the deep prefetch queues of ~3 resident
# programs per SM keep the HBM busy (runs 21-22).
_MMA_GEMV_M1_PROGRAMS = 448


# The MMA GEMV's K split at M = 1 on a WeightLayout.TILES_64 weight (run 56; with
# pinned loads: 4 steps a program at K = 4096, all loaded before the first MMA).
_TILED_M1_SPLIT = 16


def _gemv_split(m: int, n: int, k: int, tile) -> int:
  """The K split of the tensor-core GEMVs' defaults for a config `tile`: at M = 1 until
  the grid has _MMA_GEMV_M1_PROGRAMS programs, else 8; halved until K splits into
  tile.block_k steps."""
  split = 1
  if m == 1:
    while (max(n // tile.block_n, 1) * split < _MMA_GEMV_M1_PROGRAMS
           and 2 * split * tile.block_k <= k):
      split *= 2
  else:
    split = 8
  return _split_fitting_k(split, k, tile)


def _split_fitting_k(split: int, k: int, tile) -> int:
  """split, halved until K splits into whole tile.block_k steps."""
  while split > 1 and k % (split * tile.block_k):
    split //= 2
  return split


def default_fragment_gemv_config(m: int, n: int, k: int) -> FragmentGemvConfig:
  """Fragment GEMV tile: 64 rows (4 warps), code words, the weight queue 4 steps ahead.
  M = 1: K split until the grid has >= 448 programs, the activations queued too where
  the split is <= 4 (the rule of default_mma_gemv_config at M = 1; run 33 found split 4
  without the activation queue faster at 4096x14336, 24.7 against 26.2 us, and this
  rule best at 14336x4096); M >= 2: split 8, activations at their step. Splits shrink
  where K needs it."""
  split = _gemv_split(m, n, k, FragmentGemvConfig())
  acts = 4 * (m == 1 and split <= 4)
  return FragmentGemvConfig(split_k=split, prefetch=4, prefetch_activations=acts)
