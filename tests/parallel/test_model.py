"""A whole tiny model, sharded (dp, tp) ∈ {(8,1), (1,8), (2,4)} (on CPU; the real
devices' layouts elsewhere, see tests/parallel/layouts.py), gives the single-device
answer: bit-exact quantized weights, and logits that differ only by float32
accumulation order (plus the rare rounding flip that order can cause downstream)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sharq_jax import parallel
from sharq_jax.models.config import ModelConfig
from sharq_jax.models.llama import CausalLM
from sharq_jax.nn import convert
from tests.parallel.layouts import DEVICES, layouts, mesh as make_mesh

pytestmark = pytest.mark.skipif(DEVICES < 2, reason="needs ≥ 2 devices")

# 16 query / 8 KV heads of 16, FFN 512: every layout below splits whole heads and
# whole 32-blocks (row-parallel K per device: 256/8 = 32, 512/8 = 64).
CFG = ModelConfig(vocab_size=96, hidden_size=256, intermediate_size=512, num_layers=2,
                  num_heads=16, num_kv_heads=8, head_dim=16, dtype=jnp.float32)
TOKENS = np.random.default_rng(0).integers(0, 96, (8, 16))


def _forward(model, tokens):
  return jax.jit(lambda m, t: m(t))(model, tokens)


def _rel(a, b):
  return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


@pytest.fixture(scope="module")
def single_device():
  out = {}
  for method in ("bf16", "nvfp4", "sharq-nvfp4"):
    model = CausalLM(CFG, rngs=nnx.Rngs(0))
    convert.quantize_model(model, method=method)
    out[method] = (model, _forward(model, jnp.asarray(TOKENS)))
  return out


@pytest.mark.parametrize("dp,tp", layouts())
@pytest.mark.parametrize("method", ["bf16", "nvfp4", "sharq-nvfp4"])
def test_sharded_model_matches_single_device(single_device, method, dp, tp):
  mesh = make_mesh(dp, tp)
  model, (single_logits) = single_device[method]
  sharded, _ = parallel.quantize_sharded(CausalLM(CFG, rngs=nnx.Rngs(0)), mesh,
                                         method=method)
  # Quantized weights: created shard by shard, bit-identical to the single-device ones.
  for a, b in zip(jax.tree.leaves(nnx.state(model)), jax.tree.leaves(nnx.state(sharded))):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  leaf = jax.tree.leaves(sharded.layers[0].self_attn.q_proj.qweight.get_value())[0]
  assert leaf.addressable_shards[0].data.shape[0] == leaf.shape[0] // tp

  logits = _forward(sharded, jax.device_put(TOKENS, parallel.data_sharding(mesh)))
  err = _rel(logits, single_logits)
  print(f"\n{method} dp={dp} tp={tp}: relative logit difference {err:.2e}")
  if method == "bf16":
    assert err < 1e-5
  else:
    # Order-of-summation noise may flip a rounding decision, which moves outputs by a
    # quantization step; it must stay far below the quantization error itself.
    quant_err = _rel(single_logits, single_device["bf16"][1])
    assert err < 0.1 * quant_err, (err, quant_err)


@pytest.mark.skipif(DEVICES < 8, reason="the refused layouts need 8 devices")
def test_layouts_that_split_heads_or_blocks_are_refused():
  mesh = make_mesh(1, 8)
  odd = CFG.replace(num_heads=12, num_kv_heads=4, head_dim=16, hidden_size=192)
  with pytest.raises(ValueError, match="12 heads unevenly"):
    parallel.shard_model(CausalLM(odd, rngs=nnx.Rngs(0)), mesh)
  small = CFG.replace(hidden_size=128, num_heads=8, num_kv_heads=8, head_dim=16)
  model = CausalLM(small, rngs=nnx.Rngs(0))
  convert.quantize_model(model, method="sharq-nvfp4")
  with pytest.raises(ValueError, match=r"o_proj: row-parallel over 8 devices.*16 per device"):
    parallel.shard_model(model, mesh)
