"""Stability of the transmission matrix: correlation of repeated projections over device time.

Reference frames of Q fixed patterns are taken, then the same patterns after cumulative waits that
grow geometrically (``first_wait_s`` x ``wait_ratio``^k up to ``max_wait_s``), stopping early once
the correlation has fallen below e^-2 of its immediate-repeat value. For a circular Gaussian field
the intensity correlation is the squared field correlation, so corr_I(t) = A exp(-2 t / tau) with
tau the decorrelation time of B (the opu convention corr(B(0), B(t)) = exp(-t/tau)); A < 1 is the
loss of correlation to noise.
"""

from __future__ import annotations

import math

import numpy as np

from .probe import Probe
from .report import StabilityResult, fig
from .session import Session, half_lit_patterns
from .stats import fit_exponential_decay


def _corr(ref: np.ndarray, y: np.ndarray, adc_max: float) -> tuple[float, float]:
    cs = []
    for a, b in zip(ref, y, strict=True):
        ok = (a < adc_max) & (b < adc_max)
        cs.append(np.corrcoef(a[ok], b[ok])[0, 1])
    cs = np.array(cs)
    return float(cs.mean()), float(cs.std(ddof=1) / math.sqrt(len(cs)))


def run_stability(s: Session, probe: Probe) -> StabilityResult:
    plan = s.plan
    s.configure(n_features=plan.ptc_features, macro_pixel_mirrors=probe.macro_pixel_mirrors,
                exposure_us=plan.stability_level * probe.unit_exposure_us)
    dark = s.dark(4).mean(axis=0)
    patterns = half_lit_patterns(plan.stability_patterns, plan.ptc_features, seed=20240503)
    t0 = s.device_time_s()
    ref = s.acquire(patterns) - dark
    again = s.acquire(patterns) - dark
    c0, c0_se = _corr(ref, again, s.adc_max - dark.mean())
    times, cors, ses = [s.device_time_s() - t0], [c0], [c0_se]
    target = plan.first_wait_s
    while plan.max_wait_s > 0 and times[-1] < plan.max_wait_s:
        target = min(target, plan.max_wait_s)
        now = s.device_time_s() - t0
        if target > now:
            s.dev.wait(target - now)
        t_k = s.device_time_s() - t0
        c, c_se = _corr(ref, s.acquire(patterns) - dark, s.adc_max - dark.mean())
        times.append(t_k)
        cors.append(c)
        ses.append(c_se)
        if c < c0 * math.exp(-2.0):
            break
        target *= plan.wait_ratio
    t = np.array(times)
    c = np.array(cors)
    se = np.maximum(np.array(ses), 1e-4)
    ratio_last = c[-1] / c0
    decayed = len(t) >= 3 and (c0 - c[-1]) > 3 * math.hypot(se[0], se[-1])
    if decayed:
        _, _, tau_i, tau_i_se = fit_exponential_decay(t, c, se)
        tau = fig(2 * tau_i, 2 * tau_i_se, "s", note="field decorrelation time: corr_I = A exp(-2t/tau)")
        tau_int = fig(tau_i, tau_i_se, "s")
    else:
        # 95 % limits of c(t_last)/c0 = exp(-t_last/tau_i): each gives a bound on tau_i
        lo = ratio_last - 2 * se[-1] / c0
        hi = ratio_last + 2 * se[-1] / c0
        if lo > 0:  # the correlation is still above lo: tau_i >= t_last / -ln(lo)
            bound = t[-1] / -math.log(min(lo, 1.0 - 1e-6))
            kind, note = "lower", f"no decorrelation seen within {t[-1]:.0f} s of device time"
        elif hi < 1:  # decorrelated, but too few points for a fit: tau_i <= t_last / -ln(hi)
            bound = t[-1] / -math.log(max(hi, 1e-300))
            kind, note = "upper", f"decorrelated within {t[-1]:.3g} s, too few points for a fit"
        else:  # the data bound nothing
            bound, kind, note = 0.0, "lower", f"correlation at {t[-1]:.3g} s too uncertain for a bound"
        tau = fig(2 * bound, None, "s", bound=kind, note=note)
        tau_int = fig(bound, None, "s", bound=kind, note=note)
    return StabilityResult(times_s=t.tolist(), correlation=c.tolist(), correlation_se=se.tolist(),
                           repeat_correlation=c0, decorrelation_time_s=tau,
                           intensity_decorrelation_time_s=tau_int)
