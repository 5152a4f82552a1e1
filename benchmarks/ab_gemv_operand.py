"""A/B in one process: the GEMV's activation operand in float16 vs float32 (M = 1, 2).

Both operands hold the same values in the same nibble-plane order (PathLayout.GEMV is
float16, converted to float32 per weight inside the kernel; the float32 variant feeds
the same kernel float32 planes, saving those conversions but doubling the activation
bytes each thread loads). Rounds alternate A and B after warm-up (harness), two tiles per shape (the
current default and the session-3 default), raw µs per call (R = 24 calls per program).

  PYTHONUNBUFFERED=1 python3 benchmarks/ab_gemv_operand.py --out $OUT [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import _bootstrap, harness  # noqa: E402

_bootstrap.setup()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from sharq_jax.kernels.sharq_matmul import (GemvConfig, default_gemv_config, gemv,  # noqa: E402
                                            pack_weight_from_float)
from sharq_jax.kernels.sharq_matmul import specs as mm_specs  # noqa: E402
from sharq_jax.kernels.sharq_prep import PathLayout, sharq_prep  # noqa: E402

CALLS, ROTATE_BYTES = 24, 240e6
OLD_DEFAULT = {(4096, 14336): GemvConfig(16, 256, 8, 4), (14336, 4096): GemvConfig(16, 256, 4, 2)}


def main():
  """Times float16 vs float32 GEMV operands per shape, M and tile; logs the medians."""
  ap = argparse.ArgumentParser()
  ap.add_argument("--out", default=os.environ.get("OUT", "ab_out"))
  ap.add_argument("--rounds", type=int, default=2)
  ap.add_argument("--smoke", action="store_true", help="CPU: tiny shape, interpret mode")
  args = ap.parse_args()
  shapes, interpret = [(4096, 14336), (14336, 4096)], False
  if args.smoke:
    shapes, interpret, harness.WARMUP_SECONDS = [(256, 64)], True, 0.0
  rec = harness.Recorder(args.out, 1e9)
  rec.log(f"[env] jax {jax.__version__} {jax.devices()} commit {os.environ.get('GIT_COMMIT', '?')}")
  key = jax.random.PRNGKey(4)
  for k, n in shapes:
    copies = 2 if args.smoke else int(ROTATE_BYTES / (0.53125 * n * k)) + 1
    pack = jax.jit(lambda w: pack_weight_from_float(w.astype(jnp.float32)))
    ws = [pack(mm_specs.heavy_weight(jax.random.fold_in(key, i), n, k)) for i in range(copies)]
    for m in (1, 2):
      xs = [mm_specs.heavy_activations(jax.random.fold_in(key, 100 + j), m, k)
            for j in range(CALLS)]
      prs = [sharq_prep(x, layout=PathLayout.GEMV, interpret=interpret) for x in xs]
      tiles = [default_gemv_config(m, n, k), OLD_DEFAULT.get((k, n), GemvConfig(16, 64))]
      tiles = list(dict.fromkeys(tiles))  # once each where the two defaults agree
      for cfg in tiles:
        fn = lambda paths, s, w, cfg=cfg: gemv(paths, w, act_scale=s,
                                               out_dtype=jnp.bfloat16, config=cfg,
                                               planes=True, interpret=interpret)
        ts = {jnp.float16: [], jnp.float32: []}
        for _ in range(args.rounds):  # A, B, A, B, ...
          for dtype in ts:
            sets = [(tuple(p.astype(dtype) for p in prs[j].paths),
                     prs[j].scale, ws[j % copies])
                    for j in range(CALLS)]
            ts[dtype].append(harness.time_calls(fn, sets) * 1e6)
        for dtype, t in ts.items():
          rec.log(f"[ab] k={k} n={n} m={m} {cfg} {jnp.dtype(dtype).name}: "
                  f"{' '.join(f'{v:.1f}' for v in t)} us raw, min {min(t):.1f}")
          rec.record(k=k, n=n, m=m, cfg=str(cfg), dtype=jnp.dtype(dtype).name, raw_us=t)

if __name__ == "__main__":
  main()
