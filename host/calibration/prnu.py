"""PRNU separated from speckle: two independent halves of many sparse, disjoint patterns.

Pattern p lights its own ``k`` features (disjoint from every other pattern), so its speckle is
independent of every other pattern's and carries no pixel-dependent mean (no common field term).
Each frame is dark-subtracted and divided by its spatial mean (removing the laser factor); the
per-pixel averages over the even and over the odd patterns, G_A and G_B, share only the fixed gain
map (1 + PRNU_i). Their spatial covariance, divided by the means, estimates PRNU^2 without bias: speckle,
shot noise and the two (separately measured) dark maps are independent between the halves.
"""

from __future__ import annotations

import math

import numpy as np

from .report import PRNUResult, sqrt_of_variance
from .session import Session


def run_prnu(s: Session, sat_dn: float, resp_dn_per_mirror_us: float) -> PRNUResult:
    plan = s.plan
    k = plan.prnu_features_per_pattern
    n_pat = plan.prnu_patterns
    macro = min(plan.prnu_macro_pixel_mirrors, s.max_macro(k * n_pat))
    t = plan.prnu_level * sat_dn / (resp_dn_per_mirror_us * k * macro**2)
    while t > 1e6 and n_pat > 32:  # too dim: fewer, brighter patterns
        k, n_pat = 2 * k, n_pat // 2
        t /= 2
    n = k * n_pat
    s.configure(n_features=n, macro_pixel_mirrors=macro, exposure_us=t)
    t = s.dev.settings.exposure_us
    dark_a = s.dark(plan.dark_repeats // 2).mean(axis=0)
    dark_b = s.dark(plan.dark_repeats - plan.dark_repeats // 2).mean(axis=0)
    patterns = np.zeros((n_pat, n), dtype=np.uint8)
    for p in range(n_pat):
        patterns[p, p * k:(p + 1) * k] = 1
    y = s.acquire(patterns)
    clipped = y >= s.adc_max
    halves = []
    for sl, d in ((slice(0, None, 2), dark_a), (slice(1, None, 2), dark_b)):
        sig = y[sl] - d[None, :]
        sig = sig / sig.mean(axis=1, keepdims=True)
        sig[clipped[sl]] = np.nan
        halves.append(np.nanmean(sig, axis=0))
    ga, gb = halves
    ok = np.isfinite(ga) & np.isfinite(gb)
    ga, gb = ga[ok] / ga[ok].mean(), gb[ok] / gb[ok].mean()
    prod = (ga - 1) * (gb - 1)
    c = float(prod.mean())
    c_se = float(prod.std(ddof=1) / math.sqrt(prod.size))
    prnu = sqrt_of_variance(c, c_se, note="sqrt(cov(G_A, G_B)) of two independent pattern halves",
                            bound_note="PRNU below the speckle averaging limit of this plan")
    return PRNUResult(patterns=n_pat, exposure_us=t, prnu_rel=prnu)
