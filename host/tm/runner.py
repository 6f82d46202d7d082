"""One retrieval on an open device: light check, acquisition, retrieval, files; and the refresh rule.

Everything goes through :class:`drivers.Device`; the frames are acquired once and kept in memory
(F x m bytes), the computation runs on them afterwards (:mod:`host.tm.retrieve`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

import opu
from drivers import Device
from opu.camera import SENSOR_STRIDE
from opu.dmd import feature_mirror_ids

from .acquire import LightCheck, acquire_plan, set_light
from .align import pearson
from .errors import TMFileError, TMPlanError
from .plan import PatternLayout, TMPlan, build_patterns
from .result import RecoveredTM
from .retrieve import BLOCK_ROWS, retrieve
from .twin import camera_from_frames, twin_config


@dataclass
class RunInfo:
    """Timing and counts of one retrieval (also written into the diagnostics)."""

    frames: int
    probe_frames: int
    seconds_device: float  # device time of the planned frames at the device's frame time
    seconds_acquire_host: float
    seconds_compute: float
    light: LightCheck


def pixel_ids_of(settings: dict) -> np.ndarray:
    """Absolute sensor ids (row * 2048 + col) of the camera ROI pixels, row-major (m,)."""
    r = settings["camera_roi"]
    rows = np.arange(r["row"], r["row"] + r["height_px"])
    cols = np.arange(r["col"], r["col"] + r["width_px"])
    return (rows[:, None] * SENSOR_STRIDE + cols[None, :]).ravel().astype(np.int64)


def mirror_ids_of(settings: dict, n_features: int) -> np.ndarray:
    """Absolute id of the top-left mirror of each of the first ``n_features`` features (n,)."""
    r = settings["input_roi"]
    dmd = opu.DMDConfig(roi_row=r["row"], roi_col=r["col"], roi_height_mirrors=r["height_mirrors"],
                        roi_width_mirrors=r["width_mirrors"],
                        macro_pixel_mirrors=settings["macro_pixel_mirrors"])
    return feature_mirror_ids(dmd, n_features).astype(np.int64)


def retrieve_tm(
    dev: Device,
    plan: TMPlan,
    out_dir: str | Path | None = None,
    *,
    light: Literal["auto", "keep"] = "auto",
    progress: bool = True,
    calibration: opu.OPUConfig | None = None,
    twin_seed: int = 12345,
    block_rows: int = BLOCK_ROWS,
    echo: Callable[[str], None] | None = print,
) -> tuple[RecoveredTM, RunInfo]:
    """Retrieve the first ``plan.n_features`` columns of ``dev``'s matrix at its camera ROI.

    Sets ``n_features`` to data + anchor features and the light level (:func:`set_light`, which
    refuses a saturating or dark device before any planned frame), acquires the planned frames,
    retrieves, and (with ``out_dir``) writes ``tm.npz`` and ``twin.json``. Returns the result and
    the run's timing.
    """
    light_check = set_light(dev, plan, light)
    st = dev.settings
    if echo:
        echo(f"plan: {plan.frames} frames = {plan.dark_repeats} dark + {plan.anchor_repeats} x "
             f"{plan.anchor_pairs} anchor + {plan.signals} signals x {plan.anchors + 1}; device time "
             f"{plan.device_seconds(st.frame_time_us):.2f} s at {1e6 / st.frame_time_us:.0f} Hz; "
             f"{dev.n_outputs} rows x {plan.n_features} columns; light {light_check.mean_signal_dn:.1f} DN "
             f"(brightest pattern) at {st.exposure_us:g} us, {st.macro_pixel_mirrors}-mirror macro-pixels")
    patterns, layout = build_patterns(plan)
    t0 = time.perf_counter()
    frames = acquire_plan(dev, patterns, progress=progress)
    t1 = time.perf_counter()
    res = retrieve(frames, plan, layout, adc_max_dn=float(st.adc_max_dn), block_rows=block_rows)
    t2 = time.perf_counter()
    status = dev.status()
    settings = st.model_dump()
    idn = dev.identity
    info = RunInfo(plan.frames, light_check.probe_frames, plan.device_seconds(st.frame_time_us), t1 - t0,
                   t2 - t1, light_check)
    scalars = {k: v for k, v in res.diagnostics.items() if not isinstance(v, np.ndarray)}
    scalars.update(frames=plan.frames, probe_frames=light_check.probe_frames,
                   seconds_device=info.seconds_device, seconds_acquire_host=info.seconds_acquire_host,
                   seconds_compute=info.seconds_compute, light_mean_signal_dn=light_check.mean_signal_dn,
                   light_saturated_fraction=light_check.saturated_fraction)
    tm = RecoveredTM(
        matrix=res.matrix, anchor_fields=res.anchor_fields, dark_dn=res.dark_dn,
        pixel_ids=pixel_ids_of(settings), mirror_ids=mirror_ids_of(settings, plan.n_features),
        mirrors_per_feature=int(st.macro_pixel_mirrors) ** 2, settings=settings, plan=plan.model_dump(),
        identity={"manufacturer": idn.manufacturer, "model": idn.model, "serial": idn.serial,
                  "firmware": idn.firmware, "resource": dev.resource},
        diagnostics=scalars,
        row_diagnostics={k: v for k, v in res.diagnostics.items() if isinstance(v, np.ndarray)},
        device_time_s=status.device_time_s,
    )
    if out_dir is not None:
        write_outputs(tm, out_dir, frames, layout, calibration, twin_seed)
    return tm, info


def write_outputs(tm: RecoveredTM, out_dir: str | Path, frames: np.ndarray, layout: PatternLayout,
                  calibration: opu.OPUConfig | None, twin_seed: int) -> None:
    """``tm.npz`` and ``twin.json`` (camera from ``calibration`` or fitted on ``frames``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cam = None
    if calibration is None:
        cam = camera_from_frames(frames, layout, tm.adc_max_dn)
        tm.diagnostics.update({f"camera_{k}": v for k, v in cam.__dict__.items()})
    tm.save(out / "tm.npz")
    cfg = twin_config(tm, cam, calibration, seed=twin_seed)
    (out / "twin.json").write_text(cfg.model_dump_json(indent=2))


def prediction_correlation(dev: Device, tm: RecoveredTM, n_probes: int = 32, seed: int = 7) -> float:
    """Pearson correlation between measured and predicted frames of ``n_probes`` fresh binary inputs.

    The device is set to the retrieval's settings first (so the columns are the same features).
    """
    restore_settings(dev, tm)
    n = tm.shape[1]
    rng = np.random.default_rng(seed)
    x = rng.random((n_probes, n)) < 0.5
    pats = np.zeros((n_probes, dev.n_features), dtype=bool)
    pats[:, :n] = x
    y = np.asarray(dev.acquire(pats, progress=False), dtype=np.float64)
    return pearson(y, tm.predict_frames(x))


def restore_settings(dev: Device, tm: RecoveredTM) -> None:
    """Configure ``dev`` as during the retrieval (camera ROI, exposure, macro-pixel, features...)."""
    want = dict(tm.settings)
    cur = dev.settings.model_dump()
    if any(cur[k] != v for k, v in want.items()):
        dev.configure(**want)


@dataclass
class RefreshOutcome:
    correlation: float
    threshold: float
    refreshed: bool
    tm: RecoveredTM
    backup: Path | None = None


def refresh(dev: Device, out_dir: str | Path, threshold: float, *, n_probes: int = 32, progress: bool = True,
            calibration: opu.OPUConfig | None = None, twin_seed: int = 12345,
            echo: Callable[[str], None] | None = print) -> RefreshOutcome:
    """Re-retrieve ``out_dir/tm.npz`` only if its prediction correlation fell below ``threshold``.

    The check costs ``n_probes`` frames. A refresh keeps the previous file as
    ``tm-<device time>s.npz`` (nothing measured is lost) and re-runs the same plan at the same
    settings (``light="keep"``, so the columns stay the same features).
    """
    if not 0 < threshold < 1:
        raise TMPlanError(f"refresh threshold must be a correlation in (0, 1), got {threshold}")
    path = Path(out_dir) / "tm.npz"
    if not path.is_file():
        raise TMFileError(f"{str(path)!r} does not exist: run a first retrieval without --refresh")
    old = RecoveredTM.load(path)
    corr = prediction_correlation(dev, old, n_probes)
    if echo:
        echo(f"prediction correlation of {path} on {n_probes} fresh inputs: {corr:.4f} "
             f"(threshold {threshold:g}, retrieved at device time {old.device_time_s:.1f} s, now "
             f"{dev.status().device_time_s:.1f} s)")
    if corr >= threshold:
        return RefreshOutcome(corr, threshold, False, old)
    backup = path.with_name(f"tm-{old.device_time_s:.0f}s.npz")
    path.replace(backup)
    plan = TMPlan.model_validate(old.plan)
    try:
        tm, _ = retrieve_tm(dev, plan, out_dir, light="keep", progress=progress, calibration=calibration,
                            twin_seed=twin_seed, echo=echo)
    except Exception:
        backup.replace(path)  # a failed refresh leaves the previous retrieval in place
        raise
    tm.diagnostics["refreshed_from_correlation"] = corr
    tm.save(path)
    if echo:
        echo(json.dumps({"refreshed": True, "previous": str(backup)}))
    return RefreshOutcome(corr, threshold, True, tm, backup)
