"""``opu calibrate``: measure a device's noise (EMVA 1288 linear model), report it, and fit a twin."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "calibrate",
        help="measure the noise of a device and write a report and a simulator twin",
        description="Dark, photon transfer (gain, read noise, saturation, linearity, PRNU, laser "
                    "fluctuation), stability and linear-projection SNR of a device, through the driver "
                    "only. Writes DIR/calibration.json, PNG plots and DIR/twin.json (an opu.OPUConfig "
                    "for drivers.connect('sim:DIR/twin.json')). Method: docs/calibration.md.",
    )
    p.add_argument("--device", default="sim", metavar="URI",
                   help="drivers.connect URI: 'sim', 'sim:CONFIG.json' or a VISA resource (default: sim)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (created if missing)")
    p.add_argument("--quick", action="store_true", help="fewer frames and a 32x32 ROI: less precise, fast")
    p.add_argument("--gain-precision", type=float, default=None, metavar="REL",
                   help="required relative standard error of the system gain K (grows the plan)")
    p.add_argument("--max-frames", type=int, default=None, metavar="N",
                   help="refuse to start when the plan needs more frames than this")
    p.add_argument("--max-wait-s", type=float, default=None, metavar="S",
                   help="longest device-time wait of the stability stage (real time on hardware)")
    p.add_argument("--twin-seed", type=int, default=12345, help="seed written into twin.json")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import drivers
    from host.calibration import CalibrationAborted, PlanError, calibrate, make_plan, summary_text

    try:
        plan = make_plan(args.quick, gain_precision_rel=args.gain_precision, max_frames=args.max_frames,
                         max_wait_s=args.max_wait_s)
    except PlanError as exc:
        print(f"opu calibrate: {exc}", file=sys.stderr)
        return 2
    try:
        device = drivers.connect(args.device)
    except (ValueError, drivers.DriverError) as exc:
        print(f"opu calibrate: cannot open {args.device!r}: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    try:
        with device:
            report = calibrate(device, out, plan, progress=not args.no_progress, twin_seed=args.twin_seed)
    except CalibrationAborted as exc:
        print(summary_text(exc.report))
        print(f"opu calibrate: {exc}", file=sys.stderr)
        return 3
    print(summary_text(report))
    if report.noise_check is not None and not report.noise_check.measurable:
        print(f"wrote {out / 'calibration.json'} (no measurable noise: no twin.json)")
        return 0
    print(f"wrote {out / 'calibration.json'}, plots and {out / 'twin.json'} "
          f"(use it as --device sim:{out / 'twin.json'})")
    return 0
