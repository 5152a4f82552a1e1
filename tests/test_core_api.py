"""API behaviour of the core: errors, bad input, packing, transforms, STE, dtypes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

import sharq_jax as sq
from sharq_jax import formats as F
from sharq_jax import masks, methods, ste

ALL_FORMATS = [F.NVFP4(), F.NVFP4(32), F.MXFP4(), F.MXFP4(scale_rounding=F.ScaleRounding.CEIL),
               F.HiF4()]


def _x(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=lambda f: f.name)
def test_k_not_multiple_raises_with_name_and_shape(fmt):
  with pytest.raises(ValueError, match=r"layers\.3\.q_proj.*\(2, 100\)"):
    F.quantize(_x((2, 100)), fmt, name="layers.3.q_proj")


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=lambda f: f.name)
def test_explicit_padding_matches_zero_padded_input(fmt):
  x = _x((3, 100))
  q = F.quantize(x, fmt, pad=True)
  assert q.shape == (3, 100) and q.dequantize().shape == (3, 100)
  k_pad = -(-100 // fmt.block_size) * fmt.block_size
  padded = jnp.pad(x, ((0, 0), (0, k_pad - 100)))
  np.testing.assert_array_equal(q.dequantize(), F.quantize_dequantize(padded, fmt)[:, :100])


def test_invalid_configs_fail_at_construction():
  with pytest.raises(ValueError, match="block_size"):
    F.NVFP4(block_size=0)
  with pytest.raises(ValueError, match="FLOOR"):
    F.MXFP4(scale_rounding="ceil")
  with pytest.raises(ValueError, match="64"):
    F.HiF4(block_size=32)
  with pytest.raises(ValueError, match="4:8-pairs"):
    masks.NMPattern.parse("4of8")
  with pytest.raises(ValueError, match="0 < n <= m"):
    masks.NMPattern(5, 4)
  with pytest.raises(ValueError, match="sharq-nvfp4"):
    methods.get_method("sharq")
  with pytest.raises(ValueError, match="multiple of the mask group"):
    sq.SharQConfig(pattern=masks.NMPattern(4, 8, 2), backbone=F.NVFP4(12), residual=F.NVFP4())


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=lambda f: f.name)
def test_nan_and_inf_poison_only_their_block(fmt):
  x = _x((4, 256))
  bad = x.at[0, 5].set(jnp.nan).at[2, 200].set(jnp.inf).at[3, 17].set(-jnp.inf)
  clean = np.asarray(F.quantize_dequantize(x, fmt))
  got = np.asarray(F.quantize_dequantize(bad, fmt))
  b = fmt.block_size
  expect_nan = np.zeros(x.shape, bool)
  for r, c in [(0, 5), (2, 200), (3, 17)]:
    expect_nan[r, c // b * b:(c // b + 1) * b] = True
  np.testing.assert_array_equal(np.isnan(got), expect_nan)
  if not fmt.has_tensor_scale:  # an NVFP4 tensor scale moves when the max moves
    np.testing.assert_array_equal(got[~expect_nan], clean[~expect_nan])


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=lambda f: f.name)
def test_zeros_stay_exact_zeros(fmt):
  x = jnp.zeros((2, 128)).at[1, :64].set(_x((64,)))
  y = np.asarray(F.quantize_dequantize(x, fmt))
  assert not np.isnan(y).any()
  np.testing.assert_array_equal(y[0], 0.0)
  np.testing.assert_array_equal(y[1, 64:], 0.0)


def test_checkify_policy_raises():
  fmt = F.NVFP4(bad_input=sq.BadInput.RAISE)
  f = checkify.checkify(jax.jit(lambda x: F.quantize_dequantize(x, fmt, name="mlp.down")))
  err, _ = f(jnp.ones((2, 32)).at[1, 3].set(jnp.nan))
  assert "mlp.down: input contains NaN or Inf" in err.get()
  err, _ = f(jnp.ones((2, 32)))
  assert err.get() is None


def test_nibble_packing_round_trips_every_code():
  nibbles = jnp.arange(16, dtype=jnp.uint8)
  values = F.nibbles_to_e2m1(nibbles)
  np.testing.assert_array_equal(values.astype(jnp.float32), F.E2M1_CODE_VALUES)
  np.testing.assert_array_equal(F.e2m1_to_nibbles(values), nibbles)
  codes = F.quantize(_x((8, 64)), F.NVFP4()).codes
  packed = F.pack_nibbles(F.e2m1_to_nibbles(codes))
  assert packed.dtype == jnp.uint8 and packed.shape == (8, 32)
  # low nibble = even index
  np.testing.assert_array_equal(packed[:, 0] & 15, F.e2m1_to_nibbles(codes)[:, 0])
  back = F.nibbles_to_e2m1(F.unpack_nibbles(packed))
  np.testing.assert_array_equal(back.astype(jnp.float32), codes.astype(jnp.float32))


def test_payload_accounting():
  q = F.quantize(_x((128, 4096)), F.NVFP4())
  assert q.payload_bits() == dict(codes=4 * 128 * 4096, scales=8 * 128 * 256, tensor_scale=32)
  assert abs(q.bits_per_value() - 4.5) < 1e-3
  assert F.quantize(_x((4, 4096)), F.MXFP4()).bits_per_value() == 4.25
  assert F.quantize(_x((4, 4096)), F.HiF4()).bits_per_value() == 4.5


def test_compress_expand_round_trip():
  x = _x((3, 5, 64))
  for spec in ["4:8-pairs", "2:4", "3:8"]:
    p = masks.NMPattern.parse(spec)
    keep = masks.unit_mask(x, p)
    c = masks.compress(x, keep, p)
    assert c.values.shape == (3, 5, 64 * p.n // p.m)
    np.testing.assert_array_equal(masks.expand(c), jnp.where(masks.nm_mask(x, p), x, 0.0))


def test_compressed_backbone_holds_the_kept_codes():
  d = sq.decompose.decompose(_x((4, 64)), methods.get_method("sharq-nvfp4").activation.config)
  c = d.compressed_backbone()
  assert c.values.shape == (4, 32) and c.positions.shape == (4, 8, 2)
  dense = masks.expand(masks.Compressed(c.values.astype(jnp.float32), c.positions, c.pattern))
  np.testing.assert_array_equal(dense, d.backbone.codes.astype(jnp.float32))


@pytest.mark.parametrize("name", list(methods.METHODS))
def test_sharq_dot_jit_vmap_and_leading_dims(name):
  w = _x((32, 128), 1) * 0.1
  qw = methods.quantize_weight(w, name)
  x = _x((2, 3, 128), 2)
  eager = sq.sharq_dot(x, qw)
  assert eager.shape == (2, 3, 32) and eager.dtype == jnp.float32
  np.testing.assert_allclose(jax.jit(sq.sharq_dot)(x, qw), eager, rtol=1e-6, atol=1e-6)
  # vmap over the leading axis: each slice is its own activation tensor.
  per_slice = jnp.stack([sq.sharq_dot(x[i], qw) for i in range(2)])
  np.testing.assert_allclose(jax.vmap(lambda xi: sq.sharq_dot(xi, qw))(x), per_slice,
                             rtol=1e-6, atol=1e-6)


def test_sharq_dot_keeps_input_dtype_and_adds_bias():
  w = _x((16, 64), 1)
  qw = methods.quantize_weight(w, "sharq-nvfp4")
  x = _x((5, 64), 2)
  b = _x((16,), 3)
  y = sq.sharq_dot(x.astype(jnp.bfloat16), qw, bias=b)
  assert y.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(y, np.float32),
                             np.asarray(sq.sharq_dot(x.astype(jnp.bfloat16), qw) + b, np.float32),
                             rtol=2e-2, atol=2e-2)


def test_bf16_method_is_the_plain_product():
  w, x = _x((16, 64), 1), _x((5, 64), 2)
  y = sq.sharq_dot(x, methods.quantize_weight(w, "bf16"))
  np.testing.assert_allclose(y, np.asarray(x, np.float64) @ np.asarray(w, np.float64).T,
                             rtol=1e-5, atol=1e-5)


def test_k_mismatch_between_x_and_weight_raises():
  qw = methods.quantize_weight(_x((16, 64)), "nvfp4")
  with pytest.raises(ValueError, match="K=32"):
    sq.sharq_dot(_x((2, 32)), qw, name="proj")


@pytest.mark.parametrize("name", ["nvfp4", "sharq-nvfp4", "sharq-hif4"])
def test_straight_through_gradient_is_identity(name):
  x = _x((4, 128))
  c = _x((4, 128), 5)
  g = jax.grad(lambda v: jnp.sum(ste.fake_quant_activation_ste(v, name) * c))(x)
  np.testing.assert_array_equal(g, c)
  gw = jax.grad(lambda v: jnp.sum(ste.fake_quant_weight_ste(v, name) * c))(x)
  np.testing.assert_array_equal(gw, c)
  # the forward value is the fake-quantized tensor
  np.testing.assert_array_equal(ste.fake_quant_activation_ste(x, name),
                                methods.fake_quant_activation(x, name))


def test_e4m3_round_is_arithmetic_and_matches_the_reference_table():
  # XLA on GPU may drop an f32->f8->f32 cast pair inside jit, so the library rounds
  # block scales arithmetically; it must equal the reference's table rounding.
  from sharq_jax.formats.elements import e4m3_round
  from tests.reference import numpy_ref as ref
  grid = np.unique([ref.e4m3fn_decode(c) for c in range(256)])
  grid = grid[np.isfinite(grid) & (grid >= 0)]
  mids = (grid[1:] + grid[:-1]) / 2
  rng = np.random.default_rng(0)
  values = np.concatenate([grid, mids, np.nextafter(mids, 0), np.nextafter(mids, 1e3),
                           np.exp(rng.uniform(np.log(1e-5), np.log(448), 100_000))])
  values = values.astype(np.float32)
  got = np.asarray(jax.jit(e4m3_round)(values))
  want = ref.e4m3_round(values.astype(np.float64))
  assert np.sum(got != want) == 0
