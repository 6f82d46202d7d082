"""``opu sweep``: run a grid (or random search) of training runs on Ray Tune.

    opu sweep SPEC.yaml --out runs/sweep                      # local Ray, all cores
    opu sweep SPEC.yaml --out runs/sweep --workers 2          # at most 2 trials at a time
    opu sweep SPEC.yaml --out runs/sweep --ray-address HOST:6379   # an existing cluster

Writes OUT/results.jsonl (one row per trial), OUT/results.csv, OUT/summary.png (metric vs the swept
parameter, seeds as error bars) and OUT/trials/ID/ (each trial's run). Re-running the same command
skips the finished trials. Exit status 0 when every trial succeeded, 1 when some failed (listed
with their errors), 2 on a bad spec or argument.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sweep", help="run many training runs (a grid or random search) on Ray Tune",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", help="sweep specification (YAML; see docs/sweep.md)")
    p.add_argument("--out", required=True, help="sweep directory (table, summary, trial runs)")
    p.add_argument("--ray-address", default=None,
                   help="address of an existing Ray cluster (default: start a local Ray instance)")
    p.add_argument("--workers", type=int, default=None,
                   help="local Ray: CPUs (concurrent single-CPU trials); default: all cores")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        import ray  # noqa: F401
    except ImportError:
        print("opu sweep: Ray is not installed; install the cluster extra: pip install -e '.[cluster]'",
              file=sys.stderr)
        return 2
    from host.sweep import SpecError, load_spec, run_sweep

    if args.workers is not None and args.workers < 1:
        print(f"opu sweep: --workers must be >= 1, got {args.workers}", file=sys.stderr)
        return 2
    try:
        spec = load_spec(args.spec)
    except SpecError as err:
        print(f"opu sweep: {err}", file=sys.stderr)
        return 2
    try:
        report = run_sweep(spec, args.out, ray_address=args.ray_address, workers=args.workers)
    except SpecError as err:
        print(f"opu sweep: {err}", file=sys.stderr)
        return 2
    print(f"done: {report.ok} of {report.total} trials ok ({report.skipped} skipped as already finished); "
          f"table {report.files['csv']}, summary {report.files['png']}")
    for row in report.failed:
        print(f"  FAILED {row['trial_id']}: {row.get('error')}", file=sys.stderr)
    return 1 if report.failed else 0
