"""The tensor-/sequence-parallel MLP block of benchmarks/bench_tp_mlp.py, in Pallas
interpret mode on simulated CPU devices: sharded == one device, and the packed-FP4
all-gather gives bit for bit the block's bf16-gather answer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from benchmarks import tp_mlp
from benchmarks.tp_mlp import BlockConfig, Layout, Linear

pytestmark = pytest.mark.skipif(jax.device_count() < 2, reason="needs ≥ 2 devices")

H, F, M = 128, 256, 16  # row-parallel over 2: F/2 = 128 = whole 32-blocks


def _mesh(tp):
  return Mesh(np.array(jax.devices()[:tp]), (tp_mlp.AXIS,))


@pytest.fixture(scope="module")
def data():
  rng = np.random.default_rng(0)
  w = [jnp.asarray(rng.standard_t(5, size=s) * 0.05, jnp.float32)
       for s in ((F, H), (F, H), (H, F))]
  x = rng.standard_t(3, size=(M, H)) * np.exp(rng.normal(0, 1, size=(1, H)))
  return jnp.asarray(x, jnp.bfloat16), w


def _run(data, tp, linear, layout, comm=True):
  x, w = data
  mesh = _mesh(tp)
  weights = tp_mlp.shard_mlp_weights(*w, mesh, linear)
  spec = P(tp_mlp.AXIS, None) if layout.sequence_parallel else P()
  cfg = BlockConfig(linear=linear, layout=layout, comm=comm, interpret=True)
  fn = jax.jit(lambda v, ws: tp_mlp.mlp_block(v, ws, mesh, cfg))
  return np.asarray(fn(jax.device_put(x, NamedSharding(mesh, spec)), weights), np.float32)


@pytest.fixture(scope="module")
def run(data):
  """_run with its answers kept: several tests compare against the same block (each
  one is seconds of interpret-mode compilation), which then runs once."""
  answers = {}

  def cached(tp, linear, layout, comm=True):
    key = (tp, linear, layout, comm)
    if key not in answers:
      answers[key] = _run(data, *key)
    return answers[key]

  return cached


def _close(got, want):
  # Row-parallel partial sums are added in another order than one device's; the
  # float32 difference can move a bfloat16 output by one unit in the last place.
  np.testing.assert_allclose(got, want, rtol=2 ** -7, atol=1e-3)


@pytest.mark.parametrize("linear", list(Linear))
def test_tensor_parallel_block_equals_one_device(data, run, linear):
  single = run(1, linear, Layout.TP)
  x, (gate, up, down) = data
  xf = np.asarray(x, np.float32)
  ref = (jax.nn.silu(xf @ np.asarray(gate).T) * (xf @ np.asarray(up).T)) @ np.asarray(down).T
  rel = np.linalg.norm(single - ref) / np.linalg.norm(ref)
  assert rel < (0.25 if linear is Linear.SHARQ else 0.02), rel  # a real MLP, quantized
  _close(run(2, linear, Layout.TP), single)
  _close(run(2, linear, Layout.SP_BF16), single)


def test_packed_gather_equals_bf16_gather_bit_for_bit(run):
  # all_gather_packed decomposes each token shard with the core library and the
  # gathered paths must equal what the prep kernel makes of the gathered bf16 X.
  packed = run(2, Linear.SHARQ, Layout.SP_PACKED)
  np.testing.assert_array_equal(packed, run(2, Linear.SHARQ, Layout.SP_BF16))


def test_without_communication_runs_and_differs(run):
  # The timing stand-in keeps shapes but skips the reduction: its answer must differ.
  got = run(2, Linear.SHARQ, Layout.TP, comm=False)
  assert got.shape == (M, H)
  assert not np.allclose(got, run(2, Linear.SHARQ, Layout.TP), rtol=1e-2)


def test_collective_bytes():
  tp = 2
  assert tp_mlp.collective_bytes(16, 256, tp, BlockConfig(layout=Layout.TP)) == dict(
      gather=0, reduce=2 * 16 * 256 * 4 // 2, scalars=4)
  assert tp_mlp.collective_bytes(16, 256, tp, BlockConfig(layout=Layout.SP_BF16)) == dict(
      gather=16 * 256 * 2 // 2, reduce=16 * 256 * 4 // 2, scalars=4)
  # SharQ-NVFP4 travels as 0.90625 byte/value (tests/parallel/test_layers.py derives it).
  packed = tp_mlp.collective_bytes(16, 256, tp, BlockConfig(layout=Layout.SP_PACKED))
  assert packed == dict(gather=int(0.90625 * 16 * 256 / 2), reduce=16 * 256 * 4 // 2,
                        scalars=8)
  assert tp_mlp.collective_bytes(16, 256, 1, BlockConfig(layout=Layout.TP))["reduce"] == 0


def test_sequence_parallel_needs_divisible_tokens(data):
  x, w = data
  mesh = _mesh(2)
  weights = tp_mlp.shard_mlp_weights(*w, mesh, Linear.BF16)
  with pytest.raises(ValueError, match="M=15 divisible by 2"):
    tp_mlp.mlp_block(x[:15], weights, mesh, BlockConfig(linear=Linear.BF16,
                                                        layout=Layout.SP_BF16))
