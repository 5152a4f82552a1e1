"""benchmarks/harness.py: chained calls compute what independent calls compute (the
barrier only orders them), and the HLO really ties each call to the previous one."""

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import harness


def _fn(x, w):
  return jnp.tanh(x @ w)


def _sets():
  rng = np.random.default_rng(0)
  return [(jnp.asarray(rng.standard_normal((4, 8)), jnp.float32),
           jnp.asarray(rng.standard_normal((8, 8)), jnp.float32)) for _ in range(3)]


def test_chained_values_equal_independent_calls():
  sets = _sets()
  chained = jax.jit(lambda s: harness._chained(_fn, s))(sets)  # pylint: disable=protected-access
  for got, (x, w) in zip(chained, sets):
    np.testing.assert_array_equal(got, _fn(x, w))


def test_chained_program_orders_calls_with_barriers():
  sets = _sets()
  hlo = jax.jit(lambda s: harness._chained(_fn, s)).lower(sets).as_text()  # pylint: disable=protected-access
  assert hlo.count("optimization_barrier") == len(sets) - 1
  independent = jax.jit(lambda s: [_fn(*a) for a in s]).lower(sets).as_text()
  assert "optimization_barrier" not in independent


def test_time_calls_both_modes():
  sets = _sets()
  assert harness.time_calls(_fn, sets, iters=2) > 0
  assert harness.time_calls(_fn, sets, iters=2, chain=True) > 0


def test_null_program_keeps_every_argument():
  """dispatch_seconds times a program that receives every buffer the real one does
  (jit would otherwise drop unused arguments and launch a cheaper program)."""
  sets = _sets()

  def main_args(**kw):
    text = jax.jit(lambda s: jax.tree.leaves(s)[0].ravel()[:1], **kw).lower(sets).as_text()
    return next(line for line in text.splitlines() if "@main(" in line).count("%arg")

  assert main_args(keep_unused=True) == len(jax.tree.leaves(sets)) == 6
  assert main_args() == 1  # what jit does by default: the reason for keep_unused
  raw, net = harness.time_calls_net(_fn, sets, iters=3)
  assert raw > 0 and harness.dispatch_seconds(sets, iters=3) > 0 and net <= raw
