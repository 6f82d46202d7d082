"""Dark measurements: all mirrors off at several exposures.

Gives the black level (intercept of the mean dark value vs exposure), the temporal dark noise
sigma_y.dark and the DSNU at the operating point. When sigma_y.dark is below the quantization limit
(sigma^2 < 0.3 DN^2: rounding, not the sensor, sets the variance), the dark series is repeated at a
higher analog gain, where the read noise is resolved; figures in electrons then use the gain ratio
(read noise referred to the input, docs/calibration.md). Electron figures need K and are filled in by
:func:`dark_in_electrons` after the photon transfer.
"""

from __future__ import annotations

import math

import numpy as np

from drivers import DriverError

from .report import DarkResult, fig
from .session import Session
from .stats import temporal_stats, weighted_line

#: below this temporal dark variance (DN^2) the rounding dominates (EMVA 1288 floors at 0.24 DN^2)
QUANTIZATION_LIMIT_DN2 = 0.3


def _series(s: Session, exposures: list[float], repeats: int) -> tuple[list[float], list[float], list[float],
                                                                       np.ndarray, np.ndarray, np.ndarray]:
    means, vars_, sds = [], [], []
    maps, tvars = [], []
    for t in exposures:
        s.configure(exposure_us=t)
        st = temporal_stats(s.dark(repeats)[None], s.adc_max)
        ok = ~st.saturated[0]
        maps.append(st.mean[0])
        tvars.append(st.var[0])
        means.append(float(st.mean[0][ok].mean()))
        vars_.append(float(st.var[0][ok].mean()))
        sds.append(float(st.mean[0][ok].std(ddof=1) / math.sqrt(ok.sum())))
    return means, vars_, sds, np.array(maps), np.array(tvars), ok


def _dsnu_dn(mean_map: np.ndarray, var_map: np.ndarray, ok: np.ndarray, repeats: int) -> tuple[float, float]:
    m = mean_map[ok]
    spatial = float(m.var(ddof=1)) - float(var_map[ok].mean()) / repeats
    val = math.sqrt(max(spatial, 0.0))
    return val, val / math.sqrt(2 * max(ok.sum() - 1, 1))


def run_dark(s: Session) -> DarkResult:
    plan, o = s.plan, s.original
    t_op = o.exposure_us
    exposures = sorted({max(1.0, t_op / 4), t_op, *plan.dark_exposures_us})
    s.configure(analog_gain_db=o.analog_gain_db, n_features=plan.ptc_features, exposure_us=t_op)
    means, vars_, sds, maps, tvars, ok = _series(s, exposures, plan.dark_repeats)
    t = np.array(exposures)
    _, _, black, black_se = weighted_line(t, np.array(means), np.maximum(np.array(sds), 1e-6))
    k_op = exposures.index(t_op)
    v_op = vars_[k_op]
    n_px = int(ok.sum())
    v_se = v_op * math.sqrt(3.0 / (plan.dark_repeats * n_px))
    dsnu, dsnu_se = _dsnu_dn(maps[k_op], tvars[k_op], ok, plan.dark_repeats)
    sigma = math.sqrt(max(v_op, 0.0))
    res = DarkResult(
        exposures_us=exposures, mean_dn=means, temporal_var_dn2=vars_,
        black_level_dn=fig(black, black_se, "DN", note="intercept of mean dark value vs exposure"),
        sigma_y_dark_dn=fig(sigma, v_se / (2 * max(sigma, 1e-9)), "DN",
                            note="includes 1/12 DN^2 of quantization"),
        dsnu_dn=fig(dsnu, dsnu_se, "DN"),
    )
    if v_op < QUANTIZATION_LIMIT_DN2 and o.analog_gain_db < plan.boost_gain_db:
        try:
            s.configure(analog_gain_db=plan.boost_gain_db, exposure_us=t_op)
        except DriverError:
            return res  # the device refuses the higher gain: keep the operating-gain figures
        bm, bv, _, bmaps, btv, bok = _series(s, exposures, plan.dark_repeats)
        res.boost_gain_db = plan.boost_gain_db
        res.boost_exposures_us, res.boost_mean_dn, res.boost_temporal_var_dn2 = exposures, bm, bv
        bd, bd_se = _dsnu_dn(bmaps[k_op], btv[k_op], bok, plan.dark_repeats)
        res.boost_dsnu_dn = fig(bd, bd_se, "DN", note=f"at {plan.boost_gain_db:g} dB")
        s.configure(analog_gain_db=o.analog_gain_db)
    return res


def dark_in_electrons(res: DarkResult, k_op: float, k_op_se: float, gain_op_db: float, repeats: int) -> None:
    """Fill read noise, dark current and DSNU in electrons from K at the operating gain (in place)."""
    if res.boost_gain_db is not None:
        k = k_op * 10 ** ((res.boost_gain_db - gain_op_db) / 20)
        t, mean, var = res.boost_exposures_us, res.boost_mean_dn, res.boost_temporal_var_dn2
        b = res.boost_dsnu_dn
        dsnu_dn, dsnu_se = (b.value, b.uncertainty) if b is not None else (None, None)
        where = f"at {res.boost_gain_db:g} dB analog gain (read noise referred to the input)"
    else:
        k = k_op
        t, mean, var = res.exposures_us, res.mean_dn, res.temporal_var_dn2
        dsnu_dn, dsnu_se = res.dsnu_dn.value, res.dsnu_dn.uncertainty
        where = "at the operating gain"
    rel_k = k_op_se / k_op
    ta = np.array(t)
    var_a = np.array(var)
    var_se = np.maximum(var_a * math.sqrt(3.0 / (repeats * 256)), 1e-4)
    _, _, c0, c0_se = weighted_line(ta, var_a, var_se)
    read2 = (c0 - 1.0 / 12.0) / k**2
    if c0 < QUANTIZATION_LIMIT_DN2:
        bound = math.sqrt(QUANTIZATION_LIMIT_DN2) / k
        res.read_noise_e = fig(bound, None, "e-", bound="upper",
                               note=f"temporal dark noise below the quantization limit {where}")
    else:
        rn = math.sqrt(max(read2, 0.0))
        rn_se = math.hypot(c0_se / (2 * k**2 * max(rn, 1e-9)), rn * rel_k)
        res.read_noise_e = fig(rn, rn_se, "e-", note=f"sqrt(sigma_y.dark^2 - 1/12) / K {where}")
    mean_a = np.array(mean)
    slope, slope_se, _, _ = weighted_line(ta, mean_a, np.full_like(mean_a, 0.01 + 0.0 * mean_a))
    dc = slope * 1e6 / k
    res.dark_current_e_per_s = fig(dc, math.hypot(slope_se * 1e6 / k, dc * rel_k), "e-/s",
                                   note=f"slope of the mean dark value vs exposure {where}")
    if dsnu_dn is not None:
        res.dsnu_e = fig(dsnu_dn / k, math.hypot(dsnu_se / k, dsnu_dn / k * rel_k), "e-", note=where)
