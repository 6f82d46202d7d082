"""``opu frontier``: held-out loss against compute for Transformer runs of several modes and sizes.

    opu frontier runs/lm_* --out runs/frontier        # frontier.png, frontier.json

Fits a power law per mode on the lower envelope of (compute, held-out bits per character) on three
axes: digital FLOPs, modeled time and modeled energy with the OPU doing the feedback
(docs/transformer.md states the formulas and the assumptions, which are options here).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    from host.lm.frontier import DEFAULT_HOST_FLOPS_PER_S, DEFAULT_HOST_JOULE_PER_FLOP

    p = subparsers.add_parser(
        "frontier", help="loss-vs-compute frontier of Transformer runs (bp, dfa, optical-dfa)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run directories of opu train --model transformer")
    p.add_argument("--out", required=True, help="directory for frontier.png and frontier.json")
    p.add_argument("--host-flops-per-s", type=float, default=DEFAULT_HOST_FLOPS_PER_S,
                   help="host throughput assumed for the time axis (FLOP/s)")
    p.add_argument("--host-joule-per-flop", type=float, default=DEFAULT_HOST_JOULE_PER_FLOP,
                   help="host efficiency assumed for the energy axis (J/FLOP)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from host.lm.frontier import FrontierError, report

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        summary = report(args.runs, out / "frontier.png", args.host_flops_per_s, args.host_joule_per_flop)
    except FrontierError as err:
        print(f"opu frontier: {err}", file=sys.stderr)
        return 2
    (out / "frontier.json").write_text(json.dumps(summary, indent=2))
    for mode, law in summary["flops"].items():
        txt = f"alpha={law['alpha']:.3f} over {law['n_points']} frontier points" if law else "too few points"
        print(f"{mode:12s} loss ~ C^-alpha (digital FLOPs): {txt}")
    print(f"wrote {out / 'frontier.png'} and {out / 'frontier.json'}")
    return 0
