"""Model conversion: every decoder-block linear → ``SharQLinear``."""

from __future__ import annotations

import dataclasses
import fnmatch
import warnings
from collections.abc import Sequence

import jax
from flax import nnx

from sharq_jax import linear, methods
from sharq_jax.nn.linear import Linear
from sharq_jax.nn.sharq_linear import SharQLinear


@dataclasses.dataclass(frozen=True)
class Rule:
  """Chooses the method of the linears whose dotted path matches ``pattern``.

  ``pattern`` is an ``fnmatch`` glob over paths such as
  ``layers.3.self_attn.q_proj`` (e.g. ``"*.down_proj"``, ``"layers.0.*"``);
  ``method`` None keeps the matched layers unquantized.
  """

  pattern: str
  method: str | methods.Method | None


@dataclasses.dataclass(frozen=True)
class ConversionReport:
  """What ``quantize_model`` did, and the weight memory before and after.

  Byte counts cover the decoder-block linear weights (and biases) only;
  ``after`` counts the packed payload (4-bit codes, scales).
  """

  converted: tuple[tuple[str, str], ...]  # (path, method name)
  kept: tuple[str, ...]
  unused_rules: tuple[Rule, ...]
  linear_bytes_before: float
  linear_bytes_after: float

  def summary(self) -> str:
    """One line for logs."""
    mib = 2 ** 20
    return (f"quantized {len(self.converted)} linears, kept {len(self.kept)}; "
            f"linear weights {self.linear_bytes_before / mib:.2f} MiB → "
            f"{self.linear_bytes_after / mib:.2f} MiB"
            + (f"; unused rules: {list(self.unused_rules)}"
               if self.unused_rules else ""))


def _nbytes(x) -> float:
  return float(sum(a.nbytes for a in jax.tree.leaves(x)))


def _bias_bytes(layer: SharQLinear) -> float:
  return 0.0 if layer.bias is None else _nbytes(layer.bias[...])


def decoder_linears(model: nnx.Module) -> list[tuple[tuple, Linear]]:
  """(path, layer) of every plain ``Linear`` inside ``model.layers``."""
  return [(("layers",) + p, m) for p, m in nnx.iter_modules(model.layers)
          if isinstance(m, Linear)]


def quantize_model(model: nnx.Module, *, method: str | methods.Method,
                   rules: Sequence[Rule] = (),
                   backend: linear.Backend = linear.Backend.XLA,
                   weight_layout=None) -> ConversionReport:
  """Replaces, in place, each linear of the decoder blocks by a ``SharQLinear``.

  The first rule whose pattern matches a layer's path picks its method, else
  ``method``; embeddings and lm_head are never touched. Rules that match no
  layer are reported (and warned about). ``backend`` and ``weight_layout`` go to
  every ``SharQLinear`` (a kernels ``WeightLayout``: ``TILES_64`` keeps the kernels'
  copy tile by tile, for decode; None: rows).
  """
  used = [False] * len(rules)
  converted, kept = [], []
  before = after = 0.0
  for path, layer in decoder_linears(model):
    dotted = ".".join(str(p) for p in path)
    chosen = method
    for i, rule in enumerate(rules):
      if fnmatch.fnmatchcase(dotted, rule.pattern):
        used[i], chosen = True, rule.method
        break
    if chosen is None:
      kept.append(dotted)
      continue
    new = SharQLinear.from_linear(layer, chosen, name=dotted, backend=backend,
                                  weight_layout=weight_layout)
    # One layer at a time: with sharded weights each quantization is an SPMD program
    # with an all-reduce (the global amax); many such programs in flight at once can
    # starve each other of threads on simulated CPU devices and deadlock.
    jax.block_until_ready(new.qweight.get_value())
    parent = model
    for p in path[:-1]:
      parent = parent[p] if isinstance(p, int) else getattr(parent, p)
    setattr(parent, path[-1], new)
    converted.append((dotted, new.method.name))
    before += _nbytes(layer.weight[...]) + _bias_bytes(new)
    after += new.weight_nbytes() + _bias_bytes(new)
  unused = tuple(r for r, u in zip(rules, used) if not u)
  if unused:
    warnings.warn(f"quantize_model: rules matched no layer: {list(unused)}")
  return ConversionReport(tuple(converted), tuple(kept), unused, before, after)
