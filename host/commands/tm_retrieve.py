"""``opu tm-retrieve``: recover a device's transmission matrix from intensity frames, write a twin."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "tm-retrieve",
        help="recover the device's transmission matrix (numerical interferometry) and write a twin",
        description="Anchors + calibration signals -> intensity differences -> distances -> MDS per row -> "
                    "linear solve (Gupta et al. 2019/2020), through the driver only. Writes DIR/tm.npz "
                    "(recovered rows, pixel/feature maps, settings, diagnostics) and DIR/twin.json "
                    "(use --device twin:DIR). Method and accuracy: docs/tm_retrieval.md.",
    )
    p.add_argument("--device", default="sim", metavar="URI",
                   help="drivers.connect URI: 'sim', 'sim:CONFIG.json', 'twin:DIR' or a VISA resource")
    p.add_argument("--features", type=int, required=True, metavar="N",
                   help="data features (columns) to recover")
    p.add_argument("--anchors", type=int, default=20, metavar="S", help="anchor patterns (default 20)")
    p.add_argument("--signals", type=int, default=None, metavar="K", help="calibration signals (default 2 N)")
    p.add_argument("--anchor-features", type=int, default=None, metavar="NA",
                   help="spare features the anchors light (default N: the largest anchor is then the "
                        "anchor linear scheme's reference); at least S")
    p.add_argument("--anchor-repeats", type=int, default=2, metavar="R", help="repeats of each anchor frame")
    p.add_argument("--pixels", type=int, default=None, metavar="M",
                   help="camera pixels (rows): a centred ROI of exactly M pixels (default: the device's ROI)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (created if missing)")
    p.add_argument("--max-frames", type=int, default=None, metavar="F",
                   help="refuse to start when the plan needs more frames than this")
    p.add_argument("--light", choices=("auto", "keep"), default="auto",
                   help="auto: set macro-pixel and exposure for the plan (default); keep: check only")
    p.add_argument("--refresh", type=float, nargs="?", const=0.98, default=None, metavar="CORR",
                   help="re-retrieve DIR/tm.npz only if its prediction correlation on fresh inputs is "
                        "below CORR (default 0.98)")
    p.add_argument("--calibration", default=None, metavar="TWIN_JSON",
                   help="camera figures for twin.json from `opu calibrate`'s twin.json (default: fitted "
                        "on the retrieval's own frames)")
    p.add_argument("--twin-seed", type=int, default=12345, help="seed written into twin.json")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import drivers
    import opu
    from host.tm import NoLightError, SaturatedDeviceError, TMError, make_plan, refresh, retrieve_tm

    def fail(msg: str, code: int = 2) -> int:
        print(f"opu tm-retrieve: {msg}", file=sys.stderr)
        return code

    try:
        plan = make_plan(args.features, args.anchors, signals=args.signals,
                         anchor_features=args.anchor_features, anchor_repeats=args.anchor_repeats,
                         max_frames=args.max_frames)
    except TMError as exc:
        return fail(str(exc))
    calibration = None
    if args.calibration:
        try:
            calibration = opu.OPUConfig.model_validate_json(Path(args.calibration).read_text())
        except (OSError, ValueError) as exc:
            return fail(f"cannot read the calibration twin {args.calibration!r}: {exc}")
    try:
        device = drivers.connect(args.device)
    except (ValueError, drivers.DriverError) as exc:
        return fail(f"cannot open {args.device!r}: {exc}")
    out = Path(args.out)
    try:
        with device:
            if args.pixels is not None:
                device.configure(camera_roi=opu.centred_roi(args.pixels).model_dump())
            if args.refresh is not None:
                outcome = refresh(device, out, args.refresh, progress=not args.no_progress,
                                  calibration=calibration, twin_seed=args.twin_seed)
                print("refreshed" if outcome.refreshed else "kept", f"{out / 'tm.npz'} (correlation "
                      f"{outcome.correlation:.4f}, threshold {outcome.threshold:g})")
                return 0
            tm, info = retrieve_tm(device, plan, out, light=args.light, progress=not args.no_progress,
                                   calibration=calibration, twin_seed=args.twin_seed)
    except (SaturatedDeviceError, NoLightError) as exc:
        return fail(f"refused before acquiring: {exc}", 3)
    except TMError as exc:
        return fail(str(exc))
    except (drivers.DriverError, opu.OPUError) as exc:
        return fail(f"device error: {exc}", 3)
    d = tm.diagnostics
    print(f"recovered {tm.shape[0]} rows x {tm.shape[1]} columns from {info.frames} frames "
          f"(+{info.probe_frames} probe frames): device time {info.seconds_device:.2f} s, compute "
          f"{info.seconds_compute:.2f} s; MDS eigen ratio {d['mds_eig_ratio_median']:.3g}, lateration "
          f"residual {d['lateration_resid_median']:.3g}, solve residual {d['solve_resid_median']:.3g} "
          f"(medians over rows), {d['saturated_frames_total']} saturated values")
    print(f"wrote {out / 'tm.npz'} and {out / 'twin.json'} (use it as --device twin:{out})")
    return 0
