"""``opu privacy-audit``: one private training run with canaries, then the one-run audit.

    opu privacy-audit --mode dfa --dp-epsilon 8 --canaries 1000 --dataset fashion-mnist --out runs/audit

m canaries (test images with a random wrong label) are each inserted with probability 1/2; after
training the auditor guesses membership from each canary's loss and turns the guesses into a lower
bound on epsilon at 95 % confidence (Steinke, Nasr & Jagielski 2023). Prints ``eps_lower`` next to the
accountant's ``eps`` and writes OUT/audit.json. A lower bound above the accountant's epsilon is a bug
(exit status 4). Other exit codes as ``opu train``.
"""

from __future__ import annotations

import argparse
import sys

EXIT_AUDIT_CONTRADICTION = 4


def register(subparsers: argparse._SubParsersAction) -> None:
    from host.commands import train as train_cmd

    p = subparsers.add_parser("privacy-audit", help="audit a private training run with canaries (one run)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # the same training and --dp-* options as `opu train`
    train_cmd.register_training_arguments(p)
    p.add_argument("--canaries", type=int, default=1000, help="number of canaries m (each included w.p. 1/2)")
    p.add_argument("--canary-seed", type=int, default=12345)
    p.add_argument("--guess-fraction", type=float, default=0.1,
                   help="the auditor guesses on the top and bottom fraction of the scores (fixed in advance)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from host.commands import train as train_cmd
    from host.privacy.audit_run import run_audit
    from host.train import DatasetError, TrainingError, TrainingInterrupted

    if args.dp_epsilon is None:
        print("opu privacy-audit: --dp-epsilon is required (the audit checks a private run)", file=sys.stderr)
        return 2
    if not 0 < args.guess_fraction <= 0.5:
        print(f"opu privacy-audit: --guess-fraction must be in (0, 0.5], got {args.guess_fraction}",
              file=sys.stderr)
        return 2
    try:
        cfg = train_cmd.train_config(args)
    except ValidationError as err:
        print(f"opu privacy-audit: invalid arguments:\n{err}", file=sys.stderr)
        return 2
    try:
        out = run_audit(cfg, args.out, guess_fraction=args.guess_fraction, log=print,
                        progress=not args.no_progress)
    except TrainingInterrupted as err:
        print(f"opu privacy-audit: {err}", file=sys.stderr)
        return train_cmd.EXIT_DEVICE_FAILURE
    except (TrainingError, DatasetError, ValueError) as err:
        print(f"opu privacy-audit: {err}", file=sys.stderr)
        return 2
    a = out["audit"]
    print(f"audit: {a['correct']}/{a['guesses']} correct guesses on {a['m']} canaries -> "
          f"eps_lower = {out['eps_lower']:.3f} (95 % confidence) vs accountant eps = {out['eps']:.3f} "
          f"(delta {out['delta']:g}); written to {args.out}/audit.json")
    if out["eps"] is not None and out["eps_lower"] > out["eps"]:
        print("opu privacy-audit: the lower bound exceeds the accountant's epsilon: the mechanism or the "
              "accounting is wrong", file=sys.stderr)
        return EXIT_AUDIT_CONTRADICTION
    return 0
