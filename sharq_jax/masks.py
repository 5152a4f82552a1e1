"""Input-adaptive N:M masks along K, and the compressed (values + positions) form.

Patterns (DESIGN.md §2.5), computed on |x| per row; of equal scores the lower index
wins:
  "4:8-pairs": each 8 consecutive entries form 4 pairs scored max(|x₂ᵢ|, |x₂ᵢ₊₁|); the
               top 2 pairs are kept (Blackwell's sparse FP4 pattern).
  "2:4":       top 2 |x| of each 4.
  "n:m":       top n |x| of each m.
"""

from __future__ import annotations

import dataclasses
import functools
import re

import jax
import jax.numpy as jnp

from sharq_jax import errors

_SPEC = re.compile(r"^(\d+):(\d+)(-pairs)?$")


@dataclasses.dataclass(frozen=True)
class NMPattern:
  """Keep n of every m entries, chosen in units of `unit` consecutive entries.

  A unit is scored by its largest |x|; the n/unit best of the m/unit units of a group
  are kept. `NMPattern(4, 8, unit=2)` is "4:8-pairs"; `NMPattern(2, 4)` is "2:4".
  """

  n: int
  m: int
  unit: int = 1

  def __post_init__(self):
    ok = (self.unit > 0 and 0 < self.n <= self.m and self.n % self.unit == 0
          and self.m % self.unit == 0)
    if not ok:
      raise ValueError(f"invalid N:M pattern n={self.n}, m={self.m}, unit={self.unit}: need "
                       "0 < n <= m with n and m multiples of unit")

  @classmethod
  def parse(cls, spec: "str | NMPattern") -> "NMPattern":
    """Parses "4:8-pairs", "2:4" or a general "n:m" (an NMPattern passes through)."""
    if isinstance(spec, NMPattern):
      return spec
    match = _SPEC.match(str(spec).strip())
    if not match:
      raise ValueError(f"unknown mask pattern {spec!r}: expected '4:8-pairs', '2:4' or 'n:m'")
    n, m = int(match.group(1)), int(match.group(2))
    return cls(n, m, unit=2 if match.group(3) else 1)

  def __str__(self) -> str:
    return f"{self.n}:{self.m}" + ("-pairs" if self.unit == 2 else
                                   "" if self.unit == 1 else f"-unit{self.unit}")

  @property
  def kept_units(self) -> int:
    """Units kept per group of m entries."""
    return self.n // self.unit

  @property
  def group_units(self) -> int:
    """Units per group of m entries."""
    return self.m // self.unit

  @property
  def position_bits(self) -> int:
    """Bits of metadata per kept unit (its index among the group's units)."""
    return max(1, (self.group_units - 1).bit_length())


def _unit_scores(x: jax.Array, pattern: NMPattern) -> jax.Array:
  """(..., K) -> (..., K/m, m/unit) scores; NaN scores as +inf (kept, never double-kept)."""
  mags = jnp.abs(x.astype(jnp.float32))
  mags = jnp.where(jnp.isnan(mags), jnp.inf, mags)
  grouped = mags.reshape(*x.shape[:-1], x.shape[-1] // pattern.m, pattern.group_units,
                         pattern.unit)
  return jnp.max(grouped, axis=-1)


def unit_mask(x: jax.Array, pattern: NMPattern, *, name: str = "tensor") -> jax.Array:
  """Boolean (..., K/m, m/unit): which units of each group are kept."""
  errors.check_divisible(x.shape, pattern.m, name=name, what=f"mask group m of {pattern}")
  scores = _unit_scores(x, pattern)
  idx = jnp.arange(pattern.group_units)
  s_i, s_j = scores[..., :, None], scores[..., None, :]
  beats = (s_j > s_i) | ((s_j == s_i) & (idx[None, :] < idx[:, None]))
  rank = jnp.sum(beats, axis=-1)  # how many units outrank unit i (ties: lower index)
  return rank < pattern.kept_units


def nm_mask(x: jax.Array, pattern: "NMPattern | str", *, name: str = "tensor") -> jax.Array:
  """Boolean mask of x's shape keeping n of every m entries along the last axis.

  Raises:
    ValueError: K is not a multiple of m (the message names `name` and the shape).
  """
  pattern = NMPattern.parse(pattern)
  errors.check_divisible(jnp.shape(x), pattern.m, name=name, what=f"mask group m of {pattern}")
  return _nm_mask(x, pattern=pattern)


@functools.partial(jax.jit, static_argnames=("pattern",))
def _nm_mask(x: jax.Array, *, pattern: NMPattern) -> jax.Array:
  keep = unit_mask(x, pattern)
  return jnp.repeat(keep, pattern.unit, axis=-1).reshape(x.shape)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Compressed:
  """The kept entries of an N:M-masked tensor and where they sit.

  values: (..., K·n/m) kept entries in ascending K order.
  positions: uint8 (..., K/m, n/unit): index of each kept unit within its group
    (2 bits each for 4:8-pairs and 2:4), ascending.
  """

  values: jax.Array
  positions: jax.Array
  pattern: NMPattern = dataclasses.field(metadata=dict(static=True))

  def metadata_bits(self) -> int:
    """Bits of position metadata."""
    return self.positions.size * self.pattern.position_bits


def compress(x: jax.Array, keep_units: jax.Array, pattern: NMPattern) -> Compressed:
  """Gathers the kept units of x (mask from `unit_mask`) into a Compressed tensor."""
  positions = jnp.argsort(~keep_units, axis=-1, stable=True)[..., :pattern.kept_units]
  grouped = x.reshape(*keep_units.shape, pattern.unit)
  kept = jnp.take_along_axis(grouped, positions[..., None], axis=-2)
  values = kept.reshape(*x.shape[:-1], x.shape[-1] * pattern.n // pattern.m)
  return Compressed(values=values, positions=positions.astype(jnp.uint8), pattern=pattern)


def expand(c: Compressed) -> jax.Array:
  """Inverse of compress: the dense (..., K) tensor with zeros at dropped entries."""
  p = c.pattern
  kept = c.values.reshape(*c.positions.shape, p.unit)
  onehot = c.positions[..., :, None].astype(jnp.int32) == jnp.arange(p.group_units)
  # Each dropped unit receives exactly one zero term, each kept unit exactly one value.
  dense = jnp.einsum("...ku,...kg->...gu", kept, onehot.astype(kept.dtype),
                     precision=jax.lax.Precision.HIGHEST)
  return dense.reshape(*c.values.shape[:-1], -1)
