"""Writes tiny llama-architecture GGUF files (gguf.GGUFWriter) for the tests."""

import numpy as np
import gguf

HIDDEN, HEADS, KV_HEADS, HEAD_DIM, FFN, LAYERS = 64, 4, 2, 16, 96, 2
SPECIAL = ["<|endoftext|>", "<|im_start|>"]
MERGES = ["h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "Ġwor l",
          "Ġworl d"]

# GGUF tensor name → HF tensor name, with the GGUF storage type used.
_BLOCK = {
    "attn_norm": ("input_layernorm", "F32"),
    "ffn_norm": ("post_attention_layernorm", "F32"),
    "attn_q": ("self_attn.q_proj", "Q4_1"),
    "attn_k": ("self_attn.k_proj", "Q8_0"),
    "attn_v": ("self_attn.v_proj", "F16"),
    "attn_output": ("self_attn.o_proj", "F32"),
    "ffn_gate": ("mlp.gate_proj", "Q4_1"),
    "ffn_up": ("mlp.up_proj", "F32"),
    "ffn_down": ("mlp.down_proj", "Q8_0"),
}


def bytes_to_unicode() -> dict[int, str]:
  """GPT-2's printable spelling of each byte."""
  keep = (list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD))
          + list(range(0xAE, 0x100)))
  chars, n = {}, 0
  for b in range(256):
    if b in keep:
      chars[b] = chr(b)
    else:
      chars[b] = chr(256 + n)
      n += 1
  return chars


def vocab() -> list[str]:
  """Byte tokens (by byte value), merge results, then special tokens."""
  toks = [bytes_to_unicode()[b] for b in range(256)]
  toks += [m.replace(" ", "") for m in MERGES]
  return toks + SPECIAL


def hf_tensors(seed: int = 0) -> dict[str, np.ndarray]:
  """Random float32 weights in Hugging Face naming and layout."""
  rng = np.random.default_rng(seed)
  v = len(vocab())
  t = {"model.embed_tokens.weight": rng.standard_normal((v, HIDDEN)),
       "model.norm.weight": 1 + 0.1 * rng.standard_normal(HIDDEN),
       "lm_head.weight": rng.standard_normal((v, HIDDEN)) / 8}
  shapes = {"self_attn.q_proj": (HEADS * HEAD_DIM, HIDDEN),
            "self_attn.k_proj": (KV_HEADS * HEAD_DIM, HIDDEN),
            "self_attn.v_proj": (KV_HEADS * HEAD_DIM, HIDDEN),
            "self_attn.o_proj": (HIDDEN, HEADS * HEAD_DIM),
            "mlp.gate_proj": (FFN, HIDDEN), "mlp.up_proj": (FFN, HIDDEN),
            "mlp.down_proj": (HIDDEN, FFN)}
  for i in range(LAYERS):
    for name, shape in shapes.items():
      t[f"model.layers.{i}.{name}.weight"] = rng.standard_normal(shape) / 8
    for name in ("input_layernorm", "post_attention_layernorm"):
      t[f"model.layers.{i}.{name}.weight"] = 1 + 0.1 * rng.standard_normal(HIDDEN)
  return {k: v.astype(np.float32) for k, v in t.items()}


def permute(w: np.ndarray, n_head: int) -> np.ndarray:
  """llama.cpp's convert_hf_to_gguf Q/K permutation (HF → GGUF)."""
  return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
          .swapaxes(1, 2).reshape(w.shape))


def write(path, tensors: dict[str, np.ndarray] | None = None, *,
          skip: tuple[str, ...] = (), pre: str = "smollm") -> dict:
  """Writes a GGUF; returns the HF tensors it encodes (before quantization)."""
  tensors = hf_tensors() if tensors is None else tensors
  w = gguf.GGUFWriter(str(path), "llama")
  w.add_block_count(LAYERS)
  w.add_context_length(512)
  w.add_embedding_length(HIDDEN)
  w.add_feed_forward_length(FFN)
  w.add_head_count(HEADS)
  w.add_head_count_kv(KV_HEADS)
  w.add_rope_freq_base(10000.0)
  w.add_layer_norm_rms_eps(1e-5)
  w.add_tokenizer_model("gpt2")
  w.add_tokenizer_pre(pre)
  toks = vocab()
  w.add_token_list(toks)
  w.add_token_types([int(gguf.TokenType.CONTROL) if t in SPECIAL
                     else int(gguf.TokenType.NORMAL) for t in toks])
  w.add_token_merges(MERGES)
  w.add_bos_token_id(toks.index("<|im_start|>"))
  w.add_eos_token_id(toks.index("<|endoftext|>"))

  def add(name, arr, kind):
    if name in skip:
      return
    qtype = gguf.GGMLQuantizationType[kind]
    if kind == "F32":
      w.add_tensor(name, arr.astype(np.float32))
    elif kind == "F16":
      w.add_tensor(name, arr.astype(np.float16))
    else:
      w.add_tensor(name, gguf.quants.quantize(arr, qtype), raw_dtype=qtype)

  add("token_embd.weight", tensors["model.embed_tokens.weight"], "Q8_0")
  add("output_norm.weight", tensors["model.norm.weight"], "F32")
  add("output.weight", tensors["lm_head.weight"], "F16")
  for i in range(LAYERS):
    for gname, (hname, kind) in _BLOCK.items():
      arr = tensors[f"model.layers.{i}.{hname}.weight"]
      if gname in ("attn_q", "attn_k"):
        arr = permute(arr, HEADS if gname == "attn_q" else KV_HEADS)
      add(f"blk.{i}.{gname}.weight", arr, kind)
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()
  return tensors


def storage_type(hf_name: str) -> str:
  """The GGUF type ``write`` used for an HF tensor."""
  top = {"model.embed_tokens.weight": "Q8_0", "model.norm.weight": "F32",
         "lm_head.weight": "F16"}
  if hf_name in top:
    return top[hf_name]
  module = hf_name.split(".", 3)[3].rsplit(".", 1)[0]
  return next(kind for h, kind in _BLOCK.values() if h == module)
