"""Local Hugging Face checkpoints: config.json, *.safetensors, tokenizer.json."""

from __future__ import annotations

import glob
import json
import math
import os
import struct

import ml_dtypes
import numpy as np
import tokenizers

from sharq_jax.loaders.checkpoint import Checkpoint
from sharq_jax.loaders.tokenizer import Tokenizer
from sharq_jax.models.config import from_hf_config
from sharq_jax.models.weights import CheckpointError

_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16,
    "BF16": ml_dtypes.bfloat16, "I64": np.int64, "I32": np.int32,
    "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}


def _read_json(path: str) -> dict:
  if not os.path.isfile(path):
    raise CheckpointError(f"{path}: file not found")
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise CheckpointError(f"{path}: invalid JSON ({e})") from e


def read_safetensors(path: str) -> dict[str, np.ndarray]:
  """Memory-maps every tensor of one .safetensors file, checking its bounds.

  Raises ``CheckpointError`` naming the file (and tensor) for a bad header, an
  unknown dtype or a tensor whose bytes lie past the end of the file.
  """
  size = os.path.getsize(path)
  with open(path, "rb") as f:
    head = f.read(8)
    if len(head) < 8:
      raise CheckpointError(f"{path}: truncated safetensors file ({size} bytes)")
    (n,) = struct.unpack("<Q", head)
    if 8 + n > size:
      raise CheckpointError(f"{path}: truncated safetensors header "
                            f"({n} header bytes, file has {size})")
    try:
      header = json.loads(f.read(n))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
      raise CheckpointError(f"{path}: corrupt safetensors header ({e})") from e
  header.pop("__metadata__", None)
  data_size = size - 8 - n
  buf = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n,
                  shape=(data_size,)) if data_size else np.zeros(0, np.uint8)
  out = {}
  for name, info in header.items():
    dtype = _DTYPES.get(info.get("dtype"))
    if dtype is None:
      raise CheckpointError(f"{path}: tensor {name!r} has unsupported dtype "
                            f"{info.get('dtype')!r}")
    start, end = info["data_offsets"]
    shape = tuple(info["shape"])
    if end > data_size:
      raise CheckpointError(f"{path}: tensor {name!r} is truncated (needs data "
                            f"bytes up to {end}, file has {data_size})")
    if end - start != math.prod(shape) * np.dtype(dtype).itemsize:
      raise CheckpointError(f"{path}: tensor {name!r}: {end - start} bytes do "
                            f"not hold shape {shape} of {info['dtype']}")
    out[name] = buf[start:end].view(dtype).reshape(shape)
  return out


def _safetensor_files(folder: str) -> list[str]:
  index = os.path.join(folder, "model.safetensors.index.json")
  if os.path.isfile(index):
    files = sorted(set(_read_json(index)["weight_map"].values()))
    paths = [os.path.join(folder, f) for f in files]
    for p in paths:
      if not os.path.isfile(p):
        raise CheckpointError(f"{p}: listed in {index} but missing")
    return paths
  paths = sorted(glob.glob(os.path.join(folder, "*.safetensors")))
  if not paths:
    raise CheckpointError(f"{folder}: no *.safetensors files")
  return paths


def _tokenizer(folder: str, cfg: dict) -> Tokenizer | None:
  path = os.path.join(folder, "tokenizer.json")
  if not os.path.isfile(path):
    return None
  try:
    backend = tokenizers.Tokenizer.from_file(path)
  except Exception as e:  # the Rust side raises a plain Exception
    raise CheckpointError(f"{path}: cannot read tokenizer ({e})") from e
  eos = cfg.get("eos_token_id")
  return Tokenizer(backend=backend, bos_id=cfg.get("bos_token_id"),
                   eos_id=eos[0] if isinstance(eos, list) else eos)


def read_hf_dir(folder: str | os.PathLike) -> Checkpoint:
  """Reads a local HF model folder (config.json, safetensors, tokenizer.json).

  Tensors keep their stored dtype (memory-mapped); the tokenizer is None when
  the folder has no tokenizer.json.
  """
  folder = os.fspath(folder)
  if not os.path.isdir(folder):
    raise CheckpointError(f"{folder}: not a directory")
  raw = _read_json(os.path.join(folder, "config.json"))
  try:
    cfg = from_hf_config(raw)
  except (KeyError, ValueError) as e:
    raise CheckpointError(f"{folder}/config.json: {e!r}") from e
  tensors = {}
  for path in _safetensor_files(folder):
    tensors.update(read_safetensors(path))
  return Checkpoint(config=cfg, tensors=tensors,
                    tokenizer=_tokenizer(folder, raw), source=folder)
