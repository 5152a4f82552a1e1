"""Every method of DESIGN.md §2.6 vs the independent reference.

Activation paths (X' domain), the tensor scale s, the fake-quantized activation, the
quantized weight (Ŵ' and s_w) are compared bit for bit; `sharq_dot` is compared with the
float64 reference linear Y = s·s_w·Σ_i P_i Ŵ'ᵀ within a float32-accumulation error bound.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.reference import numpy_ref as ref

import sharq_jax.methods as methods
import sharq_jax.linear as linear

NAMES = list(ref.METHOD_NAMES)


def _report(name, n, total, ex):
  print(f"\n[{name}] mismatches: {n} / {total}" + (f"  e.g. {ex}" if n else ""))


def _check(tag, got, exp, x=None):
  n, ex = ref.mismatch(got, exp, x)
  _report(tag, n, np.size(exp), ex)
  return n


def _inputs(seed):
  rng = np.random.default_rng(seed)
  xs = [
      ref.heavy_tailed(rng, 64, 1024, binades=6.0, outlier_channels=6),
      ref.heavy_tailed(rng, 64, 1024, binades=30.0, outlier_channels=3, outlier_p=1e-2),
      # integer-valued (tie-heavy) data with zeros
      (rng.integers(-4, 5, (64, 1024)) * 2.0 ** rng.integers(-3, 4, (64, 1))).astype(np.float32),
  ]
  w = ref.heavy_tailed(rng, 256, 1024, binades=0.0, outlier_channels=2)
  return xs, w


@functools.lru_cache(maxsize=None)
def _jitted(name):
  m = methods.get_method(name)

  def paths(x):
    p, s = m.activation.paths(x)
    return tuple(p), s

  return (jax.jit(paths), jax.jit(m.activation.fake_quant),
          jax.jit(lambda w: methods.quantize_weight(w, name)))


def test_registry_has_every_method_of_design_2_6():
  for name in NAMES:
    assert methods.get_method(name).name == name


@pytest.mark.parametrize("name", NAMES)
def test_activation_paths_vs_reference(name):
  xs, _ = _inputs(20)
  paths_fn, fq_fn, _ = _jitted(name)
  total = 0
  for i, x in enumerate(xs):
    got_paths, got_s = paths_fn(jnp.asarray(x))
    r = ref.activation_paths(name, x)
    assert len(got_paths) == len(r.paths), (len(got_paths), len(r.paths))
    total += _check(f"{name} x{i} s", np.asarray(got_s), r.s)
    for j, (g, e) in enumerate(zip(got_paths, r.paths)):
      total += _check(f"{name} x{i} path{j}", np.asarray(g), e, x)
    total += _check(f"{name} x{i} fake_quant", np.asarray(fq_fn(jnp.asarray(x))),
                    r.fake_quant, x)
  assert total == 0


def test_activation_paths_leading_batch_dims():
  """(B, T, K) activations give the same result as the flattened (B*T, K) rows for
  methods with a per-tensor scale computed over the whole tensor."""
  rng = np.random.default_rng(21)
  x = ref.heavy_tailed(rng, 48, 512, binades=4.0, outlier_channels=2).reshape(2, 24, 512)
  total = 0
  for name in ["nvfp4", "sharq-nvfp4", "sharq-hif4"]:
    p, s = jax.jit(methods.get_method(name).activation.paths)(jnp.asarray(x))
    r = ref.activation_paths(name, x)
    total += _check(f"{name} 3-d s", np.asarray(s), r.s)
    for j, (g, e) in enumerate(zip(p, r.paths)):
      total += _check(f"{name} 3-d path{j}", np.asarray(g), e, x)
  assert total == 0


@pytest.mark.parametrize("name", NAMES)
def test_weight_quant_vs_reference(name):
  _, w = _inputs(22)
  _, _, wq_fn = _jitted(name)
  qw = wq_fn(jnp.asarray(w))
  r = ref.weight_quant(name, w)
  unscaled, scale, deq = jax.jit(lambda q: (q.unscaled(), q.scale(), q.dequantize()))(qw)
  total = _check(f"{name} W' (unscaled)", np.asarray(unscaled), r.deq_unscaled, w)
  total += _check(f"{name} s_w", np.asarray(scale), r.s_w)
  total += _check(f"{name} W-hat", np.asarray(deq), r.deq, w)
  assert total == 0


@pytest.mark.parametrize("name", NAMES)
def test_sharq_dot_vs_float64_reference(name):
  xs, w = _inputs(23)
  x = xs[0]
  qw = _jitted(name)[2](jnp.asarray(w))
  bias = np.random.default_rng(0).standard_normal(w.shape[0]).astype(np.float32)
  got = np.asarray(jax.jit(lambda a: linear.sharq_dot(a, qw, bias=jnp.asarray(bias)))(
      jnp.asarray(x)), np.float64)
  exp = ref.linear(name, x, w, bias=bias)
  # float32 accumulation bound: |err| <= (K + 4) u · s s_w Σ_i |P_i| |Ŵ'|ᵀ + u |y| + u |b|
  a = ref.activation_paths(name, x)
  wr = ref.weight_quant(name, w)
  absacc = sum(np.abs(p) @ np.abs(wr.deq_unscaled).T for p in a.paths)
  u = 2.0 ** -24
  k = x.shape[-1]
  bound = ((k + 4) * u * abs(float(a.s) * float(wr.s_w)) * absacc + u * np.abs(exp)
           + u * np.abs(bias))
  err = np.abs(got - exp)
  n = int(np.sum(~(err <= bound)))
  rel = float(np.max(err / np.maximum(np.abs(exp), 1e-30)))
  print(f"\n[{name} sharq_dot] outside f32 accumulation bound: {n} / {exp.size}; "
        f"max rel err {rel:.3g}")
  assert n == 0


def test_scaled_input_x_prime_vs_reference():
  """NUMERICS.md step 1: s = f32(amax/2688), X' = f32(X / s), bit for bit."""
  import sharq_jax.decompose as decompose
  xs, _ = _inputs(24)
  total = 0
  for i, x in enumerate(xs):
    xp, s = jax.jit(lambda a: decompose.scaled_input(a, True))(jnp.asarray(x))
    es, exp = ref._nv_x_prime(x)
    total += _check(f"scaled_input x{i} s", np.asarray(s), es)
    total += _check(f"scaled_input x{i} X'", np.asarray(xp), exp, x)
    # X' given the library's own s (isolates the X/s division from the s computation)
    own = ref.f32(x.astype(np.float64) / np.float64(np.asarray(s)))
    total += _check(f"scaled_input x{i} X' = f32(X / s_lib)", np.asarray(xp), own, x)
  assert total == 0


def test_methods_k_not_multiple_raise_value_error():
  for name in NAMES:
    if name == "bf16":
      continue
    with pytest.raises(ValueError, match="lyr"):
      methods.get_method(name).activation.paths(jnp.ones((2, 40), jnp.float32), name="lyr")
