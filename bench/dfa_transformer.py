"""Transformers with optical DFA, and the compute frontier (issue 10) -> bench/results/dfa_transformer.json.

Main comparison: byte-level decoder-only Transformer (4 blocks, d_model 128, 4 heads, context 128,
batch 16) on the ``pystdlib`` corpus, the same seed and token budget for the modes bp, dfa,
optical-dfa (in-process simulator ``drivers.connect("sim")``, realistic default device, ternarized
error, each distinct pattern of a step acquired once, auto-exposure) and shallow (only the
unembedding learns). Held-out bits per character on the held-out files; the unigram baseline.

Frontier: bp and dfa over a model-size sweep (d_model 64/128/256, 2-4 blocks), a power law
L = a C^-alpha fitted on the lower envelope of (digital FLOPs, held-out bpc) per mode
(:mod:`host.lm.frontier`); ``frontier_exponent_bp`` / ``frontier_exponent_dfa`` are the alphas.

    .venv/bin/python bench/dfa_transformer.py              # full (GPU-sized; hours on 2 CPU cores)
    .venv/bin/python bench/dfa_transformer.py --quick      # CPU-sized: d 64, 2 blocks, context 64

Goals: lm_bpc_dfa <= lm_bpc_shallow - 0.3; lm_bpc_optical_dfa <= 1.05 x lm_bpc_dfa; bp best.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402

from host.lm import LMConfig, load_corpus, train_lm  # noqa: E402
from host.lm.frontier import report  # noqa: E402

MODES = ("bp", "dfa", "optical-dfa", "shallow")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="CPU-sized configuration")
    ap.add_argument("--steps", type=int, default=None, help="optimizer steps of the main comparison")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--no-sweep", action="store_true", help="skip the frontier sweep")
    ap.add_argument("--device", default="sim")
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--body-lr-scale", type=float, default=0.1,
                    help="DFA modes: learning rate of the blocks relative to the head's")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "dfa_transformer.json"))
    ap.add_argument("--runs-dir", default=None, help="keep the run directories here (default: temporary)")
    args = ap.parse_args(argv)
    if args.quick:
        main_shape = dict(d_model=64, n_blocks=2, n_heads=4, context=64, batch_size=16)
        steps = args.steps or 300
        sweep = [(32, 2), (64, 2)]
        sweep_steps = 200
    else:
        main_shape = dict(d_model=128, n_blocks=4, n_heads=4, context=128, batch_size=16)
        steps = args.steps or 3000
        sweep = [(64, 2), (128, 4), (256, 4)]
        sweep_steps = steps
    eval_every = max(steps // 10, 1)
    lr = args.lr or 1e-3
    corpus = load_corpus("pystdlib")
    tmp = tempfile.TemporaryDirectory(prefix="bench_lm_")
    runs = Path(args.runs_dir) if args.runs_dir else Path(tmp.name)
    results: dict[str, dict] = {}
    partial = Path(args.out).with_suffix(".partial.json")
    partial.parent.mkdir(parents=True, exist_ok=True)
    say = lambda m: (lambda s: print(f"[{m}] {s}", flush=True))  # noqa: E731
    for mode in args.modes.split(","):
        cfg = LMConfig(mode=mode, steps=steps, eval_every=eval_every, lr=lr, seed=0, device=args.device,
                       body_lr_scale=args.body_lr_scale, **main_shape)
        t0 = time.perf_counter()
        res = train_lm(cfg, runs / f"main_{mode}", progress=False, log=say(mode), corpus=corpus)
        st = [r["step_time_ms"] for r in res.metrics]
        results[mode] = {
            "heldout_bpc": res.final["heldout_bpc"], "alignment": res.final["alignment"],
            "step_time_ms": statistics.median(st[1:] if len(st) > 1 else st),
            "frames": sum(r["frames"] for r in res.metrics),
            "device_time_s": sum(r["device_time_s"] for r in res.metrics),
            "flops_per_token": res.final["flops_per_token"], "wall_s": time.perf_counter() - t0,
            "curve": [(r["step"], r["heldout_bpc"]) for r in res.metrics],
        }
        unigram = res.unigram_bpc
        partial.write_text(json.dumps({"unigram": unigram, "modes": results}, indent=2, default=float))
    frontier = None
    if not args.no_sweep:
        dirs = []
        for d, blocks in sweep:
            for mode in ("bp", "dfa"):
                out = runs / f"sweep_{mode}_d{d}_L{blocks}"
                cfg = LMConfig(mode=mode, steps=sweep_steps, eval_every=max(sweep_steps // 10, 1), lr=lr,
                               seed=0, d_model=d, n_blocks=blocks, n_heads=4, context=main_shape["context"],
                               batch_size=main_shape["batch_size"], body_lr_scale=args.body_lr_scale)
                train_lm(cfg, out, progress=False, log=say(f"sweep {mode} d{d} L{blocks}"), corpus=corpus)
                dirs.append(out)
        png = Path(args.out).with_name("dfa_transformer_frontier.png")
        frontier = report(dirs, png)
    bpc = {m: r["heldout_bpc"] for m, r in results.items()}
    od = results.get("optical-dfa")
    n_steps = steps
    out = {
        "lm_bpc_unigram": unigram,
        "lm_bpc_bp": bpc.get("bp"), "lm_bpc_dfa": bpc.get("dfa"),
        "lm_bpc_optical_dfa": bpc.get("optical-dfa"), "lm_bpc_shallow": bpc.get("shallow"),
        "lm_frames_per_step": od["frames"] / n_steps if od else None,
        "lm_device_s_per_step": od["device_time_s"] / n_steps if od else None,
        "lm_step_time_ratio": (od["step_time_ms"] / results["bp"]["step_time_ms"]
                               if od and "bp" in results else None),
        "frontier_exponent_bp": (frontier["flops"]["bp"] or {}).get("alpha") if frontier else None,
        "frontier_exponent_dfa": (frontier["flops"]["dfa"] or {}).get("alpha") if frontier else None,
        "frontier": frontier,
        "setup": {**main_shape, "steps": steps, "lr": lr, "seed": 0, "device": args.device,
                  "body_lr_scale": args.body_lr_scale, "quick": args.quick, "sweep": sweep,
                  "sweep_steps": sweep_steps, "corpus": corpus.describe(),
                  "jax_backend": jax.default_backend(),
                  "machine": platform.processor() or platform.machine()},
        "modes": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, default=float))
    print(f"{'mode':12s} {'bpc':>7s} {'step ms':>8s} {'frames':>9s} {'device s':>9s}")
    for m, r in results.items():
        print(f"{m:12s} {r['heldout_bpc']:7.3f} {r['step_time_ms']:8.1f} {r['frames']:9d} "
              f"{r['device_time_s']:9.1f}")
    print(f"unigram {unigram:.3f} bpc")
    if "dfa" in bpc and "shallow" in bpc:
        print(f"dfa - shallow = {bpc['dfa'] - bpc['shallow']:+.3f} bpc (goal <= -0.3)")
    if "dfa" in bpc and "optical-dfa" in bpc:
        print(f"optical-dfa / dfa = {bpc['optical-dfa'] / bpc['dfa']:.3f} (goal <= 1.05)")
    if out["lm_step_time_ratio"]:
        print(f"lm_step_time_ratio (optical-dfa / bp) = {out['lm_step_time_ratio']:.2f}")
    if frontier:
        print(f"frontier exponents: bp {out['frontier_exponent_bp']}, dfa {out['frontier_exponent_dfa']}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
