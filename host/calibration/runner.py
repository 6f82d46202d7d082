"""Run a whole calibration on an open device and write its outputs.

Stages in order (each saved to ``calibration.json`` as soon as it finishes, so a device that drops
out keeps what was measured): probe, dark, photon transfer, PRNU, linear SNR, stability (last: its
waits are the longest part on hardware).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path

from drivers import Device, DriverError

from .dark import dark_in_electrons, run_dark
from .errors import CalibrationError
from .linear_snr import run_linear_snr
from .noise_check import run_noise_check
from .photon_transfer import run_photon_transfer
from .plan import CalibrationPlan, make_plan
from .plots import plot_report
from .prnu import run_prnu
from .probe import run_probe
from .report import CalibrationReport, fig
from .session import Session
from .stability import run_stability
from .summary import budget_text
from .twin import QE_ASSUMED, build_twin

#: the stages that measure temporal noise (all after the probe and the noise check)
NOISE_STAGES = ("dark", "photon_transfer", "prnu", "linear_snr", "stability")


class _Noiseless(Exception):
    """Internal: the noise check found nothing to measure; the report is complete without the stages."""


class CalibrationAborted(CalibrationError):
    """The run stopped early; ``report`` holds the finished stages (also saved to ``path``)."""

    def __init__(self, message: str, report: CalibrationReport, path: Path) -> None:
        super().__init__(message)
        self.report = report
        self.path = path


def calibrate(device: Device, out_dir: str | Path, plan: CalibrationPlan | None = None, *,
              progress: bool = True, twin_seed: int = 12345, plots: bool = True,
              echo: Callable[[str], None] | None = print) -> CalibrationReport:
    """Calibrate ``device`` (open), write ``calibration.json``, plots and ``twin.json`` to ``out_dir``.

    A device whose repeated frames are bit-identical (no temporal noise, e.g. ``lightonml:simulated``)
    gets a complete report with ``noise_check.measurable = False``, the noise stages listed in
    ``skipped_stages`` and no ``twin.json``.

    Returns the complete report. Raises :class:`CalibrationAborted` (with the partial report, which is
    also written) when the device fails or a measurement is impossible (no light, saturated).
    """
    plan = plan or make_plan(quick=False)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "calibration.json"
    idn = device.identity
    budget = plan.budget()
    report = CalibrationReport(
        date=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), resource=device.resource,
        identity={"manufacturer": idn.manufacturer, "model": idn.model, "serial": idn.serial,
                  "firmware": idn.firmware, "is_simulated": idn.is_simulated},
        settings=device.settings.model_dump(), plan=plan.model_dump(), budget=budget,
        quantum_efficiency_assumed=QE_ASSUMED,
    )
    if echo:
        echo(budget_text(budget, device.resource))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=budget.frames_total, unit="frame", desc="calibrate", leave=False)
    s = Session(device, plan, bar)
    started = time.perf_counter()
    t_dev0 = _device_time(device)

    def save(stage: str | None) -> None:
        if stage:
            report.stages_completed.append(stage)
        report.frames_used = s.frames
        report.device_time_s = _device_time(device) - t_dev0 if t_dev0 is not None else 0.0
        report.wall_time_s = time.perf_counter() - started
        path.write_text(report.model_dump_json(indent=2))

    try:
        probe = run_probe(s)
        save("probe")
        report.noise_check = run_noise_check(s, probe)
        save("noise_check")
        if not report.noise_check.measurable:
            # a noiseless device: every later stage measures temporal variance; say so, invent nothing
            why = "skipped: no measurable noise (see noise_check)"
            report.skipped_stages = dict.fromkeys(NOISE_STAGES, why)
            report.skipped_stages["stability"] = ("skipped with the noise stages: its decay fit is weighted "
                                                  "by noise-derived standard errors, all zero here")
            raise _Noiseless
        report.dark = run_dark(s)
        save("dark")
        report.photon_transfer = run_photon_transfer(s, probe)
        ptc = report.photon_transfer
        K = ptc.system_gain_dn_per_e
        dark_in_electrons(report.dark, K.value, K.uncertainty, s.original.analog_gain_db, plan.dark_repeats)
        resp = ptc.responsivity_e_per_mirror_us
        report.photons_per_mirror_us = fig(resp.value / QE_ASSUMED, resp.uncertainty / QE_ASSUMED,
                                           "photons/(mirror us)", note=f"for the assumed QE {QE_ASSUMED}")
        save("photon_transfer")
        sat_dn = ptc.saturation_dn.value or probe.saturation_signal_dn
        resp_dn = resp.value * K.value
        report.prnu = run_prnu(s, sat_dn, resp_dn)
        save("prnu")
        report.linear_snr = run_linear_snr(s, sat_dn, resp_dn)
        save("linear_snr")
        report.stability = run_stability(s, probe)
        save("stability")
    except _Noiseless:
        pass
    except (DriverError, CalibrationError) as exc:
        kind = "device dropped out" if isinstance(exc, DriverError) else "measurement impossible"
        report.error = f"{type(exc).__name__}: {exc}"
        save(None)
        if plots:
            plot_report(report, out)
        raise CalibrationAborted(
            f"calibration stopped ({kind}) after {', '.join(report.stages_completed) or 'no stage'}: {exc}. "
            f"Partial results (marked incomplete) are in {path}", report, path) from exc
    finally:
        if bar is not None:
            bar.close()
        try:
            if device.is_open:
                s.restore()
        except DriverError:
            pass  # a device that dropped out cannot be restored; the report says so
    report.complete = True
    save(None)
    if plots:
        plot_report(report, out)
    if report.noise_check.measurable:
        twin = build_twin(report, seed=twin_seed)
        (out / "twin.json").write_text(twin.model_dump_json(indent=2))
    return report


def _device_time(device: Device) -> float | None:
    try:
        return float(device.status().device_time_s)
    except DriverError:
        return None
