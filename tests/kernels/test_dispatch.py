"""sharq_dot's Pallas dispatch: supported cases agree with the XLA reference, the rest
raise with the reason."""

import jax.numpy as jnp
import numpy as np
import pytest

from sharq_jax import linear, methods
from sharq_jax.kernels import dispatch
from sharq_jax.kernels.sharq_matmul import pack_weight


def _w(n=48, k=128, method="sharq-nvfp4"):
  w = jnp.asarray(np.random.default_rng(0).standard_normal((n, k)) * 0.05, jnp.float32)
  return methods.quantize_weight(w, method)


def test_reasons():
  x = jnp.ones((3, 128), jnp.bfloat16)
  assert "nvfp4" in dispatch.why_unsupported(x, _w(method="nvfp4"))
  assert "K=64" in dispatch.why_unsupported(jnp.ones((3, 64), jnp.bfloat16), _w())
  assert "N=40" in dispatch.why_unsupported(x, _w(n=40), interpret=True)
  assert "int32" in dispatch.why_unsupported(jnp.ones((3, 128), jnp.int32), _w(),
                                             interpret=True)
  assert dispatch.supports(x, _w(), interpret=True)
  assert dispatch.supports(x, pack_weight(_w()), interpret=True)


def test_pallas_path_matches_reference_in_interpret_mode():
  qw = _w()
  x = jnp.asarray(np.random.default_rng(1).standard_t(3, (2, 5, 128)), jnp.bfloat16)
  bias = jnp.ones((48,))
  y = dispatch.sharq_dot_pallas(x, qw, bias=bias, interpret=True)
  yr = linear.sharq_dot_reference(x, qw, bias=bias)
  assert y.dtype == x.dtype and y.shape == (2, 5, 48)
  np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(yr, np.float32),
                             rtol=2e-2, atol=2e-2)  # both rounded to bfloat16


def test_backend_selection_on_cpu():
  qw = _w()
  x = jnp.ones((3, 128), jnp.bfloat16)
  if dispatch.supports(x, qw):  # pragma: no cover - only on a GPU
    pytest.skip("GPU backend: the Pallas path is available")
  with pytest.raises(ValueError, match="need an NVIDIA GPU"):
    linear.sharq_dot(x, qw, backend="pallas")
  with pytest.raises(ValueError, match="no Pallas kernel"):
    dispatch.sharq_dot_pallas(x, _w(method="nvfp4"))
  np.testing.assert_array_equal(np.asarray(linear.sharq_dot(x, qw, backend="auto")),
                                np.asarray(linear.sharq_dot(x, qw, backend="xla")))


def test_sharq_linear_packs_its_weight_once(monkeypatch):
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from sharq_jax import nn  # pylint: disable=g-import-not-at-top
  qw = _w()
  x = jnp.asarray(np.random.default_rng(2).standard_t(3, (4, 128)), jnp.bfloat16)
  layer = nn.SharQLinear(qw, None, backend=linear.Backend.PALLAS, interpret=True)
  assert layer.packed is not None
  assert layer.weight_nbytes() == qw.nbytes() + pack_weight(qw).nbytes()
  # Calls use the kept copy: packing again would fail here.
  monkeypatch.setattr(dispatch, "pack_weight", lambda w: (_ for _ in ()).throw(
      AssertionError("repacked on call")) if not isinstance(w, dispatch.PackedWeight) else w)
  y = nnx.jit(lambda m, v: m(v))(layer, x)
  np.testing.assert_array_equal(np.asarray(y, np.float32), np.asarray(
      dispatch.sharq_dot_pallas(x, pack_weight(qw), interpret=True), np.float32))
  np.testing.assert_allclose(np.asarray(y, np.float32),
                             np.asarray(linear.sharq_dot_reference(x, qw), np.float32),
                             rtol=2e-2, atol=2e-2)


def test_sharq_linear_keeps_no_copy_where_kernels_do_not_run():
  from sharq_jax import nn  # pylint: disable=g-import-not-at-top
  assert nn.SharQLinear(_w(), None, backend=linear.Backend.XLA).packed is None
  assert nn.SharQLinear(_w(method="nvfp4"), None, backend=linear.Backend.PALLAS,
                        interpret=True).packed is None  # no kernel for this method
  if linear.jax.default_backend() != "gpu":  # AUTO falls back to XLA off GPU
    assert nn.SharQLinear(_w(), None, backend=linear.Backend.AUTO).packed is None


def test_sharq_linear_keeps_a_tiled_copy_when_asked():
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from sharq_jax import nn  # pylint: disable=g-import-not-at-top
  from sharq_jax.kernels.sharq_matmul import WeightLayout  # pylint: disable=g-import-not-at-top
  qw = _w(n=64)
  rows = nn.SharQLinear(qw, None, backend=linear.Backend.PALLAS, interpret=True)
  tiles = nn.SharQLinear(qw, None, backend=linear.Backend.PALLAS, interpret=True,
                         weight_layout=WeightLayout.TILES_64)
  assert rows.packed.get_value().layout is WeightLayout.ROWS
  assert tiles.packed.get_value().layout is WeightLayout.TILES_64
  assert tiles.weight_nbytes() == rows.weight_nbytes()
  # N = 48 does not tile by 64: that layer keeps rows instead of failing the model
  narrow = nn.SharQLinear(_w(n=48), None, backend=linear.Backend.PALLAS, interpret=True,
                          weight_layout="tiles_64")
  assert narrow.packed.get_value().layout is WeightLayout.ROWS
  with pytest.raises(ValueError, match="tiles_46"):  # a typo fails at build, any backend
    nn.SharQLinear(qw, None, weight_layout="tiles_46")
  for m in (1, 6):  # the MMA GEMV reads the tiles; PACKED (M = 6) converts them first
    x = jnp.asarray(np.random.default_rng(m).standard_t(3, (m, 128)), jnp.bfloat16)
    np.testing.assert_array_equal(
        np.asarray(nnx.jit(lambda mod, v: mod(v))(tiles, x), np.float32),
        np.asarray(nnx.jit(lambda mod, v: mod(v))(rows, x), np.float32))
