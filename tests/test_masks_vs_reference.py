"""Library N:M masks vs the independent reference, bit for bit (DESIGN.md §2.5).

>= 1e6 heavy-tailed values per pattern, plus tie-heavy data (small integers with random
signs, zeros) where the lower-index tie rule decides most groups.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.reference import numpy_ref as ref

import sharq_jax.masks as masks

PATTERNS = ["4:8-pairs", "2:4", "1:4", "2:8", "4:8", "3:8", "1:2", "8:16-pairs"]


def _report(name, n, total, ex):
  print(f"\n[{name}] mismatches: {n} / {total}" + (f"  e.g. {ex}" if n else ""))


def _compare(pattern, x, tag):
  got = np.asarray(jax.jit(lambda a: masks.nm_mask(a, pattern))(jnp.asarray(x)))
  exp = ref.nm_mask(x, pattern)
  assert got.shape == x.shape and got.dtype == np.bool_
  bad = got != exp
  n = int(bad.sum())
  ex = []
  for idx in np.argwhere(bad)[:3]:
    r, c = idx
    _, m, _ = ref.parse_pattern(pattern)
    g0 = (c // m) * m
    ex.append(dict(row=int(r), group=x[r, g0:g0 + m].tolist(),
                   expected=exp[r, g0:g0 + m].astype(int).tolist(),
                   got=got[r, g0:g0 + m].astype(int).tolist()))
  _report(f"mask {pattern} {tag}", n, x.size, ex)
  return n


@pytest.mark.parametrize("pattern", PATTERNS)
def test_mask_vs_reference_heavy_tailed(pattern):
  rng = np.random.default_rng(10)
  x = ref.heavy_tailed(rng, 1024, 1024, binades=20.0, outlier_channels=8)
  assert _compare(pattern, x, "heavy-tailed") == 0


@pytest.mark.parametrize("pattern", PATTERNS)
def test_mask_vs_reference_ties(pattern):
  rng = np.random.default_rng(11)
  x = (rng.integers(0, 4, (512, 512)) * rng.choice([-1, 1], (512, 512))).astype(np.float32)
  x[:8] = 0.0  # whole rows of ties
  assert _compare(pattern, x, "ties") == 0


def test_pattern_parse():
  p = masks.NMPattern.parse("4:8-pairs")
  assert (p.n, p.m) == (4, 8)
  p = masks.NMPattern.parse("2:4")
  assert (p.n, p.m) == (2, 4)
  p = masks.NMPattern.parse("3:8")
  assert (p.n, p.m) == (3, 8)
  for bad in ["4-8", "9:8", "0:4", "3:8-pairs", "pairs"]:
    with pytest.raises(ValueError):
      masks.NMPattern.parse(bad)


def test_mask_k_not_multiple_raises_naming_layer():
  with pytest.raises(ValueError, match="layer7"):
    masks.nm_mask(jnp.ones((2, 12)), "4:8-pairs", name="layer7")
