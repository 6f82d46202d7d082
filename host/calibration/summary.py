"""The one-page terminal summary of a calibration report."""

from __future__ import annotations

from .report import Budget, CalibrationReport


def budget_text(budget: Budget, resource: str) -> str:
    stages = ", ".join(f"{k} {v}" for k, v in budget.frames_by_stage.items())
    return (f"Calibration plan for {resource}: about {budget.frames_total} frames\n  ({stages});\n"
            f"  waits up to {budget.max_wait_s:.0f} s of device time; a real 2 kHz device needs about "
            f"{budget.seconds_at_2khz:.0f} s;\n  expected gain precision "
            f"{budget.predicted_gain_rel_precision:.1%}")


def summary_text(r: CalibrationReport) -> str:
    idn = r.identity
    lines = [
        f"OPU noise calibration (EMVA 1288 linear model) - {r.date}",
        f"device  {idn.get('manufacturer')} {idn.get('model')} s/n {idn.get('serial')} "
        f"fw {idn.get('firmware')}"
        f" [{r.resource}]",
        f"status  {'complete' if r.complete else 'INCOMPLETE: ' + str(r.error)}; stages: "
        f"{', '.join(r.stages_completed) or 'none'}",
        f"frames  {r.frames_used} ({r.device_time_s:.1f} s device time, {r.wall_time_s:.1f} s wall)",
    ]
    s = r.settings
    lines.append(f"point   exposure {s['exposure_us']:g} us, {s['bit_depth']} bit, "
                 f"gain {s['analog_gain_db']:g} dB")
    if r.noise_check is not None and not r.noise_check.measurable:
        lines.append(f"noise   {r.noise_check.note}")
        lines.append(f"        not run: {', '.join(r.skipped_stages)}; no twin.json")
    rows: list[tuple[str, object]] = []
    if r.dark:
        d = r.dark
        rows += [("black level", d.black_level_dn), ("temporal dark noise sigma_y.dark", d.sigma_y_dark_dn),
                 ("DSNU", d.dsnu_dn), ("DSNU (e-)", d.dsnu_e), ("read noise sigma_d", d.read_noise_e),
                 ("dark current", d.dark_current_e_per_s)]
    if r.photon_transfer:
        p = r.photon_transfer
        rows += [("system gain K", p.system_gain_dn_per_e), ("1/K", p.inverse_gain_e_per_dn),
                 (f"saturation capacity ({p.saturation_limited_by})", p.saturation_capacity_e),
                 ("SNR max", p.snr_max), ("linearity error min", p.linearity_error_min_pct),
                 ("linearity error max", p.linearity_error_max_pct),
                 ("laser fluctuation (rel. std)", p.laser_fluctuation_rel),
                 ("QE x photons per mirror", p.responsivity_e_per_mirror_us),
                 ("speckle grain", p.speckle_grain_px)]
    if r.prnu:
        rows.append(("PRNU", r.prnu.prnu_rel))
    if r.stability:
        rows.append(("decorrelation time tau", r.stability.decorrelation_time_s))
    for name, f in rows:
        if f is not None:
            lines.append(f"  {name:<34s} {f}")
    if r.linear_snr:
        for sc in r.linear_snr.schemes:
            best = f"{sc.best_exposure_us:g} us" if sc.best_exposure_us else "none unsaturated"
            lines.append(f"  linear SNR {sc.scheme:<10s} at {r.linear_snr.operating_exposure_us:g} us: "
                         f"{sc.snr_at_operating}; best {sc.snr_best} at {best}")
    return "\n".join(lines)
