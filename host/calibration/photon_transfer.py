"""Photon transfer on speckle: per-pixel temporal statistics of fixed patterns over an exposure sweep.

Each (pattern, pixel) is one photon-transfer point (mu_y - mu_y.dark, sigma_y^2): exponential speckle
spreads the points over the whole range at every exposure. Points are binned by signal and
sigma_y^2 = K (mu_y - mu_y.dark) + c is fitted on the bins up to 70 % of the saturation signal (free
offset c: see docs/calibration.md). The laser's common per-frame factor is measured from the frame
totals and divided out before the variances are taken. Saturation comes from the pixels pinned at a
constant value (ADC maximum or full well), linearity from the response of each point vs exposure.
"""

from __future__ import annotations

import math

import numpy as np

from .probe import Probe
from .report import PhotonTransferResult, fig, sqrt_of_variance
from .session import Session
from .stats import bin_points, neighbour_correlation, temporal_stats, weighted_line

#: EMVA 1288 fit range: up to this fraction of the saturation signal
FIT_MAX_FRACTION = 0.7
#: points with less temporal variance than this (DN^2) are quantization-limited and not fitted
FIT_MIN_VAR_DN2 = 0.3
#: a pattern's frames enter the laser estimate with at least this many unsaturated pixels...
LASER_MIN_PIXELS = 17
#: ... whose mean signal is above this fraction of the saturation signal (shot noise would dominate)
LASER_MIN_SIGNAL_FRACTION = 0.05


def laser_pattern_usable(n_pixels: int, total_dn: float, saturation_dn: float) -> bool:
    """Whether a pattern's ``n_pixels`` unsaturated pixels, summing to ``total_dn`` above dark, can
    measure the laser's common factor: enough of them, and bright enough on average."""
    return (n_pixels >= LASER_MIN_PIXELS and total_dn > 0
            and total_dn / n_pixels > LASER_MIN_SIGNAL_FRACTION * saturation_dn)


def run_photon_transfer(s: Session, probe: Probe) -> PhotonTransferResult:
    """Measure and fit (the figures a device cannot give are None, with a note saying why)."""
    plan = s.plan
    exposures = [float(np.clip(f * probe.unit_exposure_us, 1.0, 1e6)) for f in plan.ptc_levels]
    xs, vs, sat_pts, sat_raw, lin = [], [], [], [], []
    laser_est = []
    maps_for_grain = None
    mean_signal = []
    for t in exposures:
        s.configure(exposure_us=t)
        dark = s.dark(plan.ptc_dark_repeats).mean(axis=0)
        frames = s.repeated(probe.patterns, plan.ptc_repeats)
        st = temporal_stats(frames, s.adc_max, dark=dark, common_mode=True,
                            clip_signal_dn=probe.saturation_signal_dn)
        x = st.mean - dark[None, :]
        ok = ~st.saturated
        xs.append(x[ok])
        vs.append(st.var[ok])
        lin.append((t, x, ok))
        mean_signal.append((t, float(x.mean()), float(ok.mean())))
        # pinned pixels: at the ADC maximum, or held at full well. A full pixel still shows the read
        # noise (and rounding), but far less than the shot noise K x its level would give: flag
        # bright pixels whose raw variance is under a tenth of that, K taken roughly from var/mean
        # of the unsaturated bright pixels of this exposure.
        bright = ok & (x > 0.2 * probe.saturation_signal_dn)
        k_rough = float(np.median(st.var[bright] / x[bright])) if bright.sum() >= 16 else 0.0
        full = (x > 0.5 * probe.saturation_signal_dn) & (
            (st.raw_var == 0) | (st.raw_var < 0.1 * k_rough * np.maximum(x, 0.0))
        )
        pinned = (st.raw_mean >= s.adc_max) | full
        sat_pts.append((st.raw_mean - dark[None, :])[pinned])
        sat_raw.append(st.raw_mean[pinned])
        # laser: spread of the frame totals beyond what the pixels' own noise explains
        for k in range(frames.shape[0]):
            sel = ok[k]
            tot = x[k][sel].sum()
            if laser_pattern_usable(int(sel.sum()), float(tot), probe.saturation_signal_dn):
                g = st.gain_factors[k]
                own = st.var[k][sel].sum() / tot**2
                laser_est.append(float(g.var(ddof=1) - own))
        if maps_for_grain is None and ok.mean() > 0.99 and x.mean() > 10 * math.sqrt(st.var.mean() + 1e-12):
            maps_for_grain = x
    x_all, v_all = np.concatenate(xs), np.concatenate(vs)
    plateau = np.concatenate(sat_pts)
    if plateau.size >= 10:
        sat_dn = float(np.median(plateau))
        sat_dn_se = float(1.2533 * plateau.std() / math.sqrt(plateau.size)) + 0.5 / math.sqrt(12)
    else:
        sat_dn, sat_dn_se = None, None
    ref_sat = sat_dn if sat_dn is not None else probe.saturation_signal_dn
    edges = np.geomspace(max(0.2, 1e-3 * ref_sat), ref_sat * 1.05, 45)
    bins = bin_points(x_all, v_all, edges)
    fit_max = FIT_MAX_FRACTION * ref_sat
    sel = (bins.x <= fit_max) & (bins.y >= FIT_MIN_VAR_DN2)
    if sel.sum() < 3:
        sel = bins.x <= fit_max
    K, K_se, c, c_se = weighted_line(bins.x[sel], bins.y[sel], bins.y_se[sel])
    res_fields = {}
    if sat_dn is not None:
        sat_e = sat_dn / K
        sat_e_se = sat_e * math.hypot(sat_dn_se / sat_dn, K_se / K)
        limited = "adc" if np.median(np.concatenate(sat_raw)) >= s.adc_max - 0.5 else "full_well"
        res_fields.update(
            saturation_dn=fig(sat_dn, sat_dn_se, "DN", note="signal above dark where pixels are pinned"),
            saturation_capacity_e=fig(sat_e, sat_e_se, "e-"),
            snr_max=fig(math.sqrt(sat_e), 0.5 * sat_e_se / math.sqrt(sat_e), "1"),
        )
    else:
        note = "no pixel reached saturation at the longest exposure"
        res_fields.update(saturation_dn=fig(None, None, "DN", note=note),
                          saturation_capacity_e=fig(None, None, "e-", note=note),
                          snr_max=fig(None, None, "1", note=note))
        limited = "not_reached"
    # linearity: each point's signal vs exposure, relative to its signal at the reference exposure
    levels = np.array(plan.ptc_levels)
    k_ref = int(np.argmin(np.abs(levels - 0.25)))
    t_ref, x_ref, ok_ref = lin[k_ref]
    dev_lv, dev_v = [], []
    for t, x, ok in lin:
        pred = x_ref * (t / t_ref)
        m = ok & ok_ref & (pred > 0.05 * ref_sat) & (pred < 0.95 * ref_sat)
        dev_lv.append(100 * pred[m] / ref_sat)
        dev_v.append(100 * (x[m] - pred[m]) / pred[m])
    lb = bin_points(np.concatenate(dev_lv), np.concatenate(dev_v), np.linspace(5, 95, 10), min_count=10)
    if lb.y.size:
        le_min_i, le_max_i = int(np.argmin(lb.y)), int(np.argmax(lb.y))
        lin_min = fig(float(lb.y[le_min_i]), float(lb.y_se[le_min_i]), "%")
        lin_max = fig(float(lb.y[le_max_i]), float(lb.y_se[le_max_i]), "%")
    else:  # e.g. the light fell after the probe: nothing to compare with a linear prediction
        note = "no pixel between 5 and 95 % of saturation at the reference exposure"
        lin_min, lin_max = fig(None, None, "%", note=note), fig(None, None, "%", note=note)
    # laser fluctuation (relative std of the common factor)
    if laser_est:
        est = np.array(laser_est)
        s2 = float(est.mean())
        s2_se = float(est.std(ddof=1) / math.sqrt(len(est))) if len(est) > 1 else abs(s2)
        laser = sqrt_of_variance(
            s2, s2_se, note="relative std of the per-frame common factor",
            bound_note="no common-mode fluctuation above the shot noise of the frame totals")
    else:
        laser = fig(None, None, "1", note="no exposure bright enough")
    # responsivity per lit mirror, from the exposures where nothing clips
    lin_pts = [(t, mx) for t, mx, frac in mean_signal if frac > 0.999]
    rate = float(np.mean([mx / t for t, mx in lin_pts])) if lin_pts else mean_signal[0][1] / mean_signal[0][0]
    resp = rate / K / probe.lit_mirrors
    resp_se = resp * math.hypot(K_se / K, 1 / math.sqrt(s.roi_shape[0] * s.roi_shape[1] * plan.ptc_patterns))
    # speckle grain: intensity correlation of adjacent pixels c1 = exp(-2 / rho^2)
    if maps_for_grain is not None:
        c1 = neighbour_correlation(maps_for_grain, s.roi_shape)
        c1_se = 1.0 / math.sqrt(maps_for_grain.size)
        grain = math.sqrt(-2.0 / math.log(c1)) if 3 * c1_se < c1 < 0.99 else 0.0
        grain_fig = fig(grain, None, "px", note=f"adjacent-pixel intensity correlation {c1:.3f}")
    else:
        grain_fig = fig(None, None, "px", note="no unsaturated bright exposure")
    result = PhotonTransferResult(
        macro_pixel_mirrors=probe.macro_pixel_mirrors, lit_mirrors=probe.lit_mirrors,
        exposures_us=exposures, bin_signal_dn=bins.x.tolist(), bin_var_dn2=bins.y.tolist(),
        bin_var_se_dn2=bins.y_se.tolist(), bin_count=bins.count.tolist(), fit_max_signal_dn=fit_max,
        system_gain_dn_per_e=fig(K, K_se, "DN/e-", note="slope of sigma_y^2 vs mu_y - mu_y.dark"),
        inverse_gain_e_per_dn=fig(1 / K, K_se / K**2, "e-/DN"),
        ptc_offset_dn2=fig(c, c_se, "DN^2", note="sigma_y.dark^2 + K^2 I_dark t seen by the fit"),
        saturation_limited_by=limited,
        linearity_levels_pct=lb.x.tolist(), linearity_deviation_pct=lb.y.tolist(),
        linearity_error_min_pct=lin_min, linearity_error_max_pct=lin_max,
        laser_fluctuation_rel=laser,
        responsivity_e_per_mirror_us=fig(resp, resp_se, "e-/(mirror us)",
                                         note="QE x photons per mirror per us"),
        speckle_grain_px=grain_fig, exposure_level_dn_per_us=rate,
        **res_fields,
    )
    return result
