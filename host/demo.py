"""``make demo``: a hardware-in-the-loop DFA run through the VISA path, end to end.

1. starts our emulated instrument (firmware model behind a SCPI-over-TCP server) on a free
   loopback port, in a background thread;
2. connects to it with ``drivers.connect("TCPIP::127.0.0.1::<port>::SOCKET")`` (pyvisa-py);
3. trains an MLP 64-256-256-10 (tanh) on scikit-learn's bundled digits with ``bp``, ``dfa`` and
   ``optical-dfa`` (the error projections measured by the instrument: 4 frames per sample, each
   distinct binary pattern of a step acquired once);
4. prints a table (accuracy, alignment per hidden layer, wall time, frames, device time) and writes
   ``demo_output/dfa_demo.png`` and each run's metrics under ``demo_output/runs/``.

    python -m host.demo [--epochs 10] [--out demo_output]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import drivers
from firmware_models import Controller, serve
from host.train import TrainConfig, TrainingError, train
from host.train.plots import plot_runs

DEMO_MODES = ("bp", "dfa", "optical-dfa")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m host.demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--out", default="demo_output")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    out = Path(args.out)
    shutil.rmtree(out / "runs", ignore_errors=True)  # the demo always starts fresh
    results = {}
    t_all = time.perf_counter()
    with serve(Controller(), host="127.0.0.1", port=0) as srv:
        print(f"emulated instrument listening at {srv.resource}")
        with drivers.connect(srv.resource) as dev:
            ident = dev.identity
            print(f"connected over VISA: {ident.manufacturer} {ident.model} (serial {ident.serial}, "
                  f"firmware {ident.firmware})")
            for mode in DEMO_MODES:
                cfg = TrainConfig(mode=mode, dataset="digits", hidden=(256, 256), activation="tanh",
                                  batch_size=128, epochs=args.epochs, seed=args.seed, device=srv.resource)
                print(f"--- {mode}")
                try:
                    res = train(cfg, out / "runs" / mode, device=dev if mode == "optical-dfa" else None,
                                progress=not args.no_progress, log=print)
                except TrainingError as err:
                    print(f"demo: {err}", file=sys.stderr)
                    return 3
                results[mode] = res
    train_wall = time.perf_counter() - t_all
    print()
    print(_table(results))
    png = plot_runs({m: r.metrics for m, r in results.items()}, out / "dfa_demo.png",
                    title="digits, MLP 64-256-256-10 tanh; optical-dfa via the emulated instrument (VISA)")
    print(f"\ncurves: {png}; per-run metrics: {out / 'runs'}/<mode>/metrics.jsonl")
    print(f"total time (server start, 3 trainings): {train_wall:.1f} s")
    return 0


def _table(results: dict) -> str:
    head = (f"{'mode':12s} {'test acc':>9s} {'alignment L1/L2 (cos)':>22s} {'wall s':>7s} "
            f"{'frames':>8s} {'device s':>9s}")
    lines = [head, "-" * len(head)]
    for mode, res in results.items():
        recs = res.metrics
        f = recs[-1]
        al = "/".join(f"{a['cos_update']:.2f}" for a in f["alignment"]) if f["alignment"] else "-"
        frames = sum(r["frames"] for r in recs)
        dev_s = sum(r["device_time_s"] for r in recs)
        lines.append(f"{mode:12s} {100 * f['test_accuracy']:8.2f}% {al:>22s} {res.wall_s:7.1f} {frames:8d} "
                     f"{dev_s:9.2f}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
