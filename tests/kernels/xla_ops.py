"""Which primitives a function runs outside its Pallas kernels (the XLA work around them)."""

import jax
import jax.extend  # noqa: F401  (jax.extend.core.jaxprs_in_params)


def _names(jaxpr):
  for eqn in jaxpr.eqns:
    yield eqn.primitive.name
    if eqn.primitive.name != "pallas_call":
      for sub in jax.extend.core.jaxprs_in_params(eqn.params):
        yield from _names(sub)


def ops_outside_kernels(fn, *args) -> set:
  """Primitive names of fn(*args) outside pallas_call bodies, through nested jits."""
  return set(_names(jax.make_jaxpr(fn)(*args).jaxpr))
