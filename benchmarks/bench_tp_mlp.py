"""Tensor-parallel SharQ MLP block (Llama-3.1-8B: 4096 → 14336 → 4096) on 1 vs N GPUs.

Usage (on the device; BENCHMARKS.md gives the exact command of each table):
  PYTHONUNBUFFERED=1 python3 benchmarks/bench_tp_mlp.py --out $OUT [--ms 1,4,16,4096]
      [--tps 1,2] [--budget_s 400] [--smoke]

For each device count tp, token count M, linear kind (sharq-nvfp4 on the Pallas
kernels, bf16 jnp.dot) and layout (benchmarks/tp_mlp.py: TP, SP_BF16, SP_PACKED):
  * time per call: R calls in one jit program with distinct random activations and
    weight copies cycled so each call streams its weights from HBM (the copies on one
    device exceed 4× its 60 MB L2), warm-up (≥ 2 runs, ≥ harness.WARMUP_SECONDS),
    median of 7 timed runs / R. By default
    (--calls chained) each call waits for the previous call's output, as a layer in a
    model does; --calls independent lets XLA overlap one call's asynchronous
    collectives with the next call's compute (throughput of independent work, which
    understates the collectives' cost);
  * the same with every collective replaced by a local stand-in (`comm=False`): the
    collectives' share of the time is 1 − t(no comm) / t;
  * bytes each device sends (tp_mlp.collective_bytes) and the time of those
    collectives alone (bf16 vs packed all-gather, float32 all-reduce / reduce-scatter).
Correctness at the real shapes first: tp > 1 against tp = 1 (relative error, and the
bf16 units in the last place it moves), and SP_PACKED against SP_BF16 (bit for bit).

Writes $OUT/results.jsonl, $OUT/log.txt and $OUT/tp_mlp.md (the table).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import _bootstrap, harness  # noqa: E402

_bootstrap.setup()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402

from benchmarks import tp_mlp  # noqa: E402
from benchmarks.tp_mlp import BlockConfig, Layout, Linear  # noqa: E402
from sharq_jax.kernels.sharq_matmul import specs as mm_specs  # noqa: E402

ROTATE_BYTES = 240e6  # weight bytes cycled per device per timing run: 4x the L2


Run = harness.Recorder
time_calls = harness.time_calls


def n_calls(m: int, smoke: bool) -> int:
  return 2 if smoke else (24 if m <= 64 else 4)


def _mesh(tp: int) -> Mesh:
  return Mesh(np.array(jax.devices()[:tp]), (tp_mlp.AXIS,))


def _x_spec(layout: Layout) -> P:
  return P(tp_mlp.AXIS, None) if layout.sequence_parallel else P()


class Setup:
  """Float weights (one set per copy) and their placement on each mesh."""

  def __init__(self, hidden: int, ffn: int, copies: int, seed: int = 0):
    key = jax.random.PRNGKey(seed)
    self.hidden, self.ffn = hidden, ffn
    self.float_weights = []
    for c in range(copies):
      kg, ku, kd = jax.random.split(jax.random.fold_in(key, c), 3)
      self.float_weights.append((mm_specs.heavy_weight(kg, ffn, hidden),
                                 mm_specs.heavy_weight(ku, ffn, hidden),
                                 mm_specs.heavy_weight(kd, hidden, ffn)))
    self.placed = {}

  def weights(self, mesh: Mesh, linear: Linear, copies: int):
    key = (mesh.shape[tp_mlp.AXIS], linear)
    have = self.placed.setdefault(key, [])
    while len(have) < copies:
      # Beyond the float sets, a copy repeats one: a distinct buffer all the same.
      src = self.float_weights[len(have) % len(self.float_weights)]
      have.append(tp_mlp.shard_mlp_weights(*src, mesh, linear))
    return have[:copies]


def _activations(m, hidden, n, seed, mesh, layout):
  keys = jax.random.split(jax.random.PRNGKey(1000 + seed), n)
  sharding = NamedSharding(mesh, _x_spec(layout))
  return [jax.device_put(mm_specs.heavy_activations(k, m, hidden), sharding) for k in keys]


def copies_needed(weights, tp) -> int:
  per_device = tp_mlp.weight_bytes_per_device(weights, tp)
  return max(2, math.ceil(ROTATE_BYTES / per_device))


def check(run: Run, setup: Setup, tps, ms, interpret: bool):
  """tp > 1 against tp = 1, and the packed gather against the bf16 gather."""
  for linear in Linear:
    for m in ms:
      x = mm_specs.heavy_activations(jax.random.PRNGKey(7), m, setup.hidden)
      outs = {}
      for tp in tps:
        mesh = _mesh(tp)
        w = setup.weights(mesh, linear, 1)[0]
        for layout in Layout:
          if (layout.sequence_parallel and (tp == 1 or m % tp)) or (
              layout is Layout.SP_PACKED and linear is Linear.BF16):
            continue
          cfg = BlockConfig(linear=linear, layout=layout, interpret=interpret)
          xs = jax.device_put(x, NamedSharding(mesh, _x_spec(layout)))
          y = jax.jit(lambda v, ws, mesh=mesh, cfg=cfg: tp_mlp.mlp_block(v, ws, mesh, cfg))(
              xs, w)
          outs[(tp, layout)] = np.asarray(y, np.float32)
      ref = outs[(1, Layout.TP)]
      for (tp, layout), y in outs.items():
        if tp == 1:
          continue
        rel = float(np.linalg.norm(y - ref) / np.linalg.norm(ref))
        # one bf16 unit in the last place at |ref|: 2^(exponent − 7)
        ulp = np.abs(y - ref) / 2.0 ** (np.floor(np.log2(np.maximum(np.abs(ref), 1e-30))) - 7)
        row = dict(section="check", linear=linear.value, m=m, tp=tp, layout=layout.value,
                   rel_err_vs_tp1=rel, max_bf16_ulps=float(np.max(ulp)),
                   frac_elems_differ=float(np.mean(y != ref)))
        if layout is Layout.SP_PACKED:
          row["neq_vs_sp_bf16"] = int(np.sum(y != outs[(tp, Layout.SP_BF16)]))
        run.record(**row)
        run.log(f"[check] {linear.value:12s} M={m:5d} tp={tp} {layout.value:9s} "
                f"rel {rel:.2e} max {row['max_bf16_ulps']:.2f} bf16-ulp, "
                f"{100 * row['frac_elems_differ']:.3f}% elems differ" +
                (f", {row['neq_vs_sp_bf16']} differ from sp-bf16"
                 if "neq_vs_sp_bf16" in row else ""))


def collectives_alone(run: Run, tps, ms, hidden: int, chain: bool, smoke: bool = False):
  """Time of each block's collectives on their own, per byte count (smoke: 1 timed run)."""
  for tp in tps:
    if tp == 1:
      continue
    mesh = _mesh(tp)
    for m in ms:
      buffers = dict(
          allreduce_f32=(lambda v: jax.lax.psum(v, tp_mlp.AXIS), (m, hidden), jnp.float32,
                         P()),
          reduce_scatter_f32=(lambda v: jax.lax.psum_scatter(
              v, tp_mlp.AXIS, scatter_dimension=0, tiled=True), (m, hidden), jnp.float32,
                              P()),
          allgather_bf16=(lambda v: jax.lax.all_gather(v, tp_mlp.AXIS, tiled=True),
                          (m, hidden), jnp.bfloat16, P(tp_mlp.AXIS)),
          allgather_packed_bytes=(lambda v: jax.lax.all_gather(v, tp_mlp.AXIS, tiled=True),
                                  (m, int(hidden * 0.90625)), jnp.uint8, P(tp_mlp.AXIS)))
      for name, (op, shape, dtype, spec) in buffers.items():
        if name != "allreduce_f32" and m % tp:  # token-split ops need whole shards
          continue
        out_spec = P() if name.startswith("allgather") or name.startswith("allreduce") \
            else P(tp_mlp.AXIS)
        fn = jax.shard_map(op, mesh=mesh, in_specs=spec, out_specs=out_spec,
                           check_vma=False)
        sets = [(jax.device_put(jnp.ones(shape, dtype) * (i + 1), NamedSharding(mesh, spec)),)
                for i in range(n_calls(m, smoke))]
        t = time_calls(fn, sets, iters=1 if smoke else 7, chain=chain)
        run.record(section="collective", tp=tp, m=m, op=name, t_us=t * 1e6, chained=chain,
                   bytes=int(np.prod(shape)) * jnp.dtype(dtype).itemsize)
        run.log(f"[collective] tp={tp} M={m:5d} {name:24s} {t * 1e6:8.1f} us")


def timings(run: Run, setup: Setup, tps, ms, smoke: bool, chain: bool):
  for m in ms:
    for linear in Linear:
      for tp in tps:
        if run.left() < 30:
          run.log("[time] budget spent; stopping")
          return
        mesh = _mesh(tp)
        probe = setup.weights(mesh, linear, 1)[0]
        copies = 2 if smoke else copies_needed(probe, tp)
        ws = setup.weights(mesh, linear, copies)
        for layout in Layout:
          if (layout.sequence_parallel and (tp == 1 or m % tp)) or (
              layout is Layout.SP_PACKED and linear is Linear.BF16):
            continue
          r = n_calls(m, smoke)
          xs = _activations(m, setup.hidden, r, m + tp, mesh, layout)
          sets = [(xs[i], ws[i % copies]) for i in range(r)]
          row = dict(section="time", linear=linear.value, m=m, tp=tp, layout=layout.value,
                     calls=r, chained=chain, weight_copies=copies,
                     weight_mb_per_device=tp_mlp.weight_bytes_per_device(probe, tp) / 1e6)
          for comm in ((True, False) if tp > 1 else (True,)):
            cfg = BlockConfig(linear=linear, layout=layout, comm=comm, interpret=smoke)
            t = time_calls(lambda v, w, cfg=cfg: tp_mlp.mlp_block(v, w, mesh, cfg), sets,
                           iters=1 if smoke else 7, chain=chain)
            row["t_us" if comm else "t_nocomm_us"] = t * 1e6
          if tp > 1:
            row["comm_share"] = 1 - row["t_nocomm_us"] / row["t_us"]
          row.update({f"{k}_bytes": v for k, v in tp_mlp.collective_bytes(
              m, setup.hidden, tp, BlockConfig(linear=linear, layout=layout)).items()})
          run.record(**row)
          run.log(f"[time] {linear.value:12s} M={m:5d} tp={tp} {layout.value:9s} "
                   f"{row['t_us']:9.1f} us" +
                   (f"  no-comm {row['t_nocomm_us']:9.1f} us  comm share "
                    f"{100 * row['comm_share']:5.1f}%" if tp > 1 else "") +
                   f"  sent/device {row['gather_bytes'] + row['reduce_bytes']:,} B")


def table(run: Run) -> str:
  """Markdown table of the timings: per (linear, M, layout), 1 vs N GPUs."""
  rows = [r for r in run.records if r.get("section") == "time"]
  base = {(r["linear"], r["m"]): r["t_us"] for r in rows if r["tp"] == 1}
  lines = ["| linear | M | GPUs | layout | µs / call | speed-up vs 1 GPU | "
           "collectives' share | bytes sent / device (gather + reduce) |",
           "|---|---|---|---|---|---|---|---|"]
  for r in rows:
    b = base.get((r["linear"], r["m"]))
    speedup = f"{b / r['t_us']:.2f}×" if b else "—"
    share = f"{100 * r['comm_share']:.0f} %" if "comm_share" in r else "—"
    sent = f"{r['gather_bytes']:,} + {r['reduce_bytes']:,}"
    lines.append(f"| {r['linear']} | {r['m']} | {r['tp']} | {r['layout']} | "
                 f"{r['t_us']:.1f} | {speedup} | {share} | {sent} |")
  return "\n".join(lines)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--out", default=os.environ.get("OUT", "bench_out"))
  ap.add_argument("--ms", default="1,4,16,4096")
  ap.add_argument("--tps", default=None, help="device counts (default: 1 and all)")
  ap.add_argument("--hidden", type=int, default=4096)
  ap.add_argument("--ffn", type=int, default=14336)
  ap.add_argument("--budget_s", type=float, default=400)
  ap.add_argument("--sections", default="check,collectives,time")
  ap.add_argument("--calls", choices=("chained", "independent"), default="chained",
                  help="chained: each call waits for the previous one's output (a layer in a "
                  "model); independent: XLA may overlap one call's collectives with the "
                  "next call's compute")
  ap.add_argument("--smoke", action="store_true",
                  help="CPU smoke test: tiny shapes, kernels in interpret mode")
  args = ap.parse_args()
  if args.smoke:
    args.hidden, args.ffn = 128, 256
    harness.WARMUP_SECONDS = 0.0  # no GPU clock to ramp up
  run = Run(args.out, args.budget_s)
  chain = args.calls == "chained"
  n = jax.device_count()
  tps = [int(v) for v in args.tps.split(",")] if args.tps else sorted({1, n})
  ms = [int(v) for v in args.ms.split(",")]
  run.log(f"[env] jax {jax.__version__} devices {jax.devices()} commit "
          f"{os.environ.get('GIT_COMMIT', '?')} date {time.strftime('%Y-%m-%d %H:%M:%S')}")
  run.record(section="env", jax=jax.__version__, device=str(jax.devices()[0].device_kind),
             devices=n, commit=os.environ.get("GIT_COMMIT", "?"), argv=sys.argv)
  setup = Setup(args.hidden, args.ffn, copies=2 if args.smoke else 6)
  sections = dict(check=lambda: check(run, setup, tps, ms, args.smoke),
                  collectives=lambda: collectives_alone(run, tps, ms, args.hidden, chain,
                                                        args.smoke),
                  time=lambda: timings(run, setup, tps, ms, args.smoke, chain))
  for name in args.sections.split(","):
    t = time.time()
    sections[name]()
    run.log(f"[main] {name} took {time.time() - t:.0f} s; {run.left():.0f} s left")
  md = table(run)
  with open(os.path.join(args.out, "tp_mlp.md"), "w") as f:
    f.write(md + "\n")
  run.log(md)


if __name__ == "__main__":
  main()
