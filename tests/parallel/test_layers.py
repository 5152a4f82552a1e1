"""Sharded SharQ linear layers equal the single-device run (on CPU 8 simulated devices;
on a GPU machine its real GPUs, see tests/parallel/layouts.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from sharq_jax import decompose as dec
from sharq_jax import methods, parallel

from sharq_jax.linear import sharq_dot
from tests.parallel.layouts import DEVICES, layouts, mesh as _mesh

pytestmark = pytest.mark.skipif(DEVICES < 2,
                                reason="needs ≥ 2 devices (tests/conftest.py sets XLA_FLAGS)")

LAYOUTS = layouts()
METHODS = ["bf16", "nvfp4", "sharq-nvfp4", "sharq-mxfp4", "sharq-hif4"]


def _data(seed, shape, outliers=True):
  rng = np.random.default_rng(seed)
  x = rng.standard_normal(shape).astype(np.float32)
  if outliers:
    x[..., rng.choice(shape[-1], 4, replace=False)] *= 40.0
  return jnp.asarray(x)


def _leaves_equal(a, b):
  return all(np.array_equal(np.asarray(u), np.asarray(v))
             for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("dp,tp", LAYOUTS)
@pytest.mark.parametrize("kind", [parallel.LinearKind.COLUMN, parallel.LinearKind.ROW])
@pytest.mark.parametrize("method", METHODS)
def test_sharded_linear_equals_single_device(dp, tp, kind, method):
  mesh = _mesh(dp, tp)
  n, k = 64, 512  # row-parallel over 8: 64 per device = whole 64-blocks and groups
  w = _data(1, (n, k)) * 0.05
  x = _data(2, (16, k))
  single = methods.quantize_weight(w, method)
  sharded = parallel.shard_quantized_weight(w, method, mesh, kind)
  assert _leaves_equal(single, sharded), "codes/scales differ from the single-device ones"
  x_spec = P("data", "model") if kind is parallel.LinearKind.ROW else P("data", None)
  x_sharded = jax.device_put(x, NamedSharding(mesh, x_spec))
  y = jax.jit(sharq_dot)(x_sharded, sharded)
  np.testing.assert_allclose(y, sharq_dot(x, single), rtol=2e-5, atol=2e-5)
  act = methods.get_method(method).activation
  if hasattr(act, "config"):  # the decomposition itself is bit-exact under sharding
    d_sharded = jax.jit(lambda v: dec.decompose(v, act.config))(x_sharded)
    assert _leaves_equal(d_sharded, dec.decompose(x, act.config))


def test_layout_that_cuts_blocks_is_refused():
  with pytest.raises(ValueError, match=r"mlp.down_proj: row-parallel over 8 devices.*72"):
    parallel.validate_linear_layout((576, 576), "sharq-nvfp4", parallel.LinearKind.ROW, 8,
                                    name="mlp.down_proj")
  with pytest.raises(ValueError, match="N=9 divisible"):
    parallel.validate_linear_layout((9, 64), "nvfp4", parallel.LinearKind.COLUMN, 2)
  parallel.validate_linear_layout((576, 576), "sharq-nvfp4", parallel.LinearKind.ROW, 2)


# Bytes per activation value that travel, derived from the formats' definitions:
# codes 1/2 byte; NVFP4 one byte per 16; MXFP4 one per 32; HiF4 4 bytes per 64; a
# compressed backbone keeps half the codes plus 2 bits per kept unit.
PACKED_BYTES_PER_VALUE = {
    "nvfp4": 0.5 + 1 / 16,
    "sharq-nvfp4": 0.25 + (1 / 4) * 2 / 8 + 1 / 32 + 0.5 + 1 / 16,
    "sharq-mxfp4": 0.25 + (1 / 4) * 2 / 8 + 1 / 64 + 0.5 + 1 / 32,
    "sharq-hif4": 0.25 + (1 / 2) * 2 / 8 + 4 / 64 + 0.5 + 4 / 64,
}


@pytest.mark.parametrize("method", sorted(PACKED_BYTES_PER_VALUE))
def test_all_gather_packed_equals_single_device_quantization(method):
  mesh = _mesh(1, DEVICES)
  x = _data(3, (32, 256))
  gather = jax.shard_map(lambda v: parallel.all_gather_packed(v, method, "model"), mesh=mesh,
                     in_specs=P("model", None), out_specs=P(), check_vma=False)
  paths, s = jax.jit(gather)(jax.device_put(x, NamedSharding(mesh, P("model", None))))
  ref_paths, ref_s = methods.get_method(method).activation.paths(x)
  assert float(s) == float(ref_s)
  for got, want in zip(paths, ref_paths):
    np.testing.assert_array_equal(got, want)
  moved = parallel.gather_bytes((32, 256), method)
  assert moved == dict(bf16=2 * 32 * 256, packed=PACKED_BYTES_PER_VALUE[method] * 32 * 256)


def test_sequence_parallel_traffic_report():
  rows = parallel.sequence_parallel_traffic(576, 30, 2048, "sharq-nvfp4")
  assert len(rows) == 60 and {r["consumer"] for r in rows} == {"q/k/v", "gate/up"}
  assert rows[0]["bf16_bytes"] == 2048 * 576 * 2
  assert rows[0]["packed_bytes"] == PACKED_BYTES_PER_VALUE["sharq-nvfp4"] * 2048 * 576
