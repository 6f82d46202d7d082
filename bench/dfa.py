"""DFA quality bar and optical step cost (issue 4) -> bench/results/dfa.json.

Fashion-MNIST, MLP 784-800-800-10 tanh, batch 128, 10 epochs, seed 0, Adam 1e-3, for the modes
bp, dfa, optical-dfa (in-process simulator ``drivers.connect("sim")``, the realistic default
device, ternarized error, each distinct pattern of a step acquired once, auto-exposure) and
shallow. ``step_time_ratio`` is the median step time of optical-dfa over that of bp (epochs 2..10,
so compilation is excluded), both on this machine.

    .venv/bin/python bench/dfa.py                 # the full benchmark (about 4 min on 2 cores)
    .venv/bin/python bench/dfa.py --epochs 1 --max-train-samples 6400   # a quick smoke run
    .venv/bin/python bench/dfa.py --modes bp,optical-dfa --no-share-repeats \
        --out bench/results/dfa_no_share.json        # every sample its own 4 frames, for comparison

Goals: bp >= 88.5 %, dfa >= 87.5 %, optical-dfa within 1.5 points of bp and well above shallow,
step_time_ratio <= 2.
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

from host.train import DatasetError, FeedbackConfig, TrainConfig, load_dataset, train  # noqa: E402

MODES = ("bp", "dfa", "optical-dfa", "shallow")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--max-train-samples", type=int, default=None)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--device", default="sim")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--no-share-repeats", dest="share_repeats", action="store_false",
                    help="optical-dfa: 4 frames for every sample instead of each distinct pattern once")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "dfa.json"))
    args = ap.parse_args(argv)
    try:
        load_dataset("fashion-mnist", args.data_dir)
    except DatasetError as err:
        print(f"bench/dfa.py: skipped: {err}", file=sys.stderr)
        return 0
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench_dfa_") as tmp:
        for mode in args.modes.split(","):
            cfg = TrainConfig(mode=mode, dataset="fashion-mnist", data_dir=args.data_dir, hidden=(800, 800),
                              activation="tanh", batch_size=128, epochs=args.epochs, seed=0,
                              device=args.device, max_train_samples=args.max_train_samples,
                              feedback=FeedbackConfig(share_repeats=args.share_repeats))
            t0 = time.perf_counter()
            res = train(cfg, Path(tmp) / mode, progress=False, log=lambda s, m=mode: print(f"[{m}] {s}",
                                                                                           flush=True))
            wall = time.perf_counter() - t0
            steps = [r["step_time_ms"] for r in res.metrics]
            f = res.final
            results[mode] = {
                "test_accuracy": f["test_accuracy"],
                "alignment": f["alignment"],
                "step_time_ms": statistics.median(steps[1:] if len(steps) > 1 else steps),
                "frames": sum(r["frames"] for r in res.metrics),
                "device_time_s": sum(r["device_time_s"] for r in res.metrics),
                "saturation_warnings": sum(r["saturation_warnings"] for r in res.metrics),
                "exposure": res.exposure,
                "wall_s": wall,
                "curve": [r["test_accuracy"] for r in res.metrics],
            }
    acc = {m: 100 * r["test_accuracy"] for m, r in results.items()}
    out = {
        "acc_bp": acc.get("bp"), "acc_dfa": acc.get("dfa"), "acc_optical_dfa": acc.get("optical-dfa"),
        "acc_shallow": acc.get("shallow"),
        "step_time_ratio": (results["optical-dfa"]["step_time_ms"] / results["bp"]["step_time_ms"]
                            if "optical-dfa" in results and "bp" in results else None),
        "setup": {"dataset": "fashion-mnist", "model": "784-800-800-10 tanh", "batch_size": 128,
                  "epochs": args.epochs, "seed": 0, "optimizer": "adam 1e-3",
                  "max_train_samples": args.max_train_samples, "device": args.device,
                  "share_repeats": args.share_repeats,
                  "machine": platform.processor() or platform.machine()},
        "modes": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"{'mode':12s} {'acc %':>7s} {'step ms':>8s} {'frames':>9s} {'device s':>9s}")
    for m, r in results.items():
        print(f"{m:12s} {acc[m]:7.2f} {r['step_time_ms']:8.1f} {r['frames']:9d} {r['device_time_s']:9.1f}")
    if out["step_time_ratio"] is not None:
        print(f"step_time_ratio (optical-dfa / bp) = {out['step_time_ratio']:.2f}  (goal <= 2)")
    if "bp" in acc and "optical-dfa" in acc:
        print(f"bp - optical-dfa = {acc['bp'] - acc['optical-dfa']:.2f} points (goal <= 1.5)")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
