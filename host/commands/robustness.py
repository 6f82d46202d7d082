"""``opu robustness``: attack a ``cnn-opu`` run every way we can (docs/robustness.md).

    opu robustness runs/cnn_opu --attacks fgsm,pgd,transfer,square,hsj,pr --eps 0.05,0.1,0.2

Writes RUN_DIR/robustness.json (accuracies per attack and eps, defended and baseline, the retrieval
quality of the phase-retrieval attacks, the sanity checks) and RUN_DIR/robustness.png. The baseline
is the run's --init-from (a --model cnn run) unless --baseline names another. Exit status 0 on success,
2 on a bad argument, 3 when the device failed.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "robustness",
        help="adversarial attacks on a cnn-opu run (robustness.json, PNG)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", help="a --model cnn-opu --input-scale pixels run directory")
    p.add_argument(
        "--attacks",
        default="fgsm,pgd,transfer,square,hsj,pr",
        help="comma-separated subset of fgsm,pgd,transfer,square,hsj,pr",
    )
    p.add_argument("--eps", default="0.05,0.1,0.2", help="L-inf radii (pixels in [0, 1])")
    p.add_argument("--baseline", default=None, help="a --model cnn run (default: the run's --init-from)")
    p.add_argument("--device", default=None, help="device URI (default: the run's)")
    p.add_argument("--samples", type=int, default=1000, help="test images attacked")
    p.add_argument("--pgd-steps", type=int, default=50)
    p.add_argument("--square-queries", type=int, default=1000, help="Square iterations (queries per image)")
    p.add_argument("--hsj-samples", type=int, default=100, help="images attacked by HopSkipJump")
    p.add_argument("--hsj-iter", type=int, default=10)
    p.add_argument("--hsj-max-eval", type=int, default=200)
    p.add_argument("--pr-anchors", default="5,10,20", help="anchors S of the phase-retrieval attacks")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="output directory (default: RUN_DIR)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from drivers.errors import DriverError
    from host.robust.attacks import AttackError
    from host.robust.evaluate import EvalConfig, RobustnessError, evaluate, parse_list, worst_case
    from host.train.checkpoint import CheckpointError

    try:
        cfg = EvalConfig(
            eps=parse_list(args.eps, float, "--eps"),
            attacks=parse_list(args.attacks, str, "--attacks"),
            n_samples=args.samples,
            pgd_steps=args.pgd_steps,
            square_queries=args.square_queries,
            hsj_samples=args.hsj_samples,
            hsj_iter=args.hsj_iter,
            hsj_max_eval=args.hsj_max_eval,
            pr_anchors=parse_list(args.pr_anchors, int, "--pr-anchors"),
            seed=args.seed,
        )
        for name, v in (
            ("--samples", cfg.n_samples),
            ("--pgd-steps", cfg.pgd_steps),
            ("--square-queries", cfg.square_queries),
            ("--hsj-samples", cfg.hsj_samples),
        ):
            if v < 1:
                raise RobustnessError(f"{name} must be >= 1, got {v}")
        rep = evaluate(args.run_dir, cfg, baseline=args.baseline, device_uri=args.device, out=args.out)
    except (RobustnessError, AttackError, CheckpointError) as err:
        print(f"opu robustness: {err}", file=sys.stderr)
        return 2
    except DriverError as err:
        print(f"opu robustness: device failure: {err}", file=sys.stderr)
        return 3
    for e in cfg.eps:
        acc, att = worst_case(rep, e)
        print(f"eps {e:g}: worst-case accuracy of the defended model {acc:.3f} ({att})")
    print(
        f"sanity checks {'passed' if rep['sanity_checks_passed'] else 'FAILED'}; "
        f"written {args.out or args.run_dir}/robustness.json and robustness.png"
    )
    return 0
