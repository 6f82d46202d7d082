"""Is there temporal noise to measure at all? (after the probe, before the EMVA stages)

The EMVA 1288 method measures the system gain K from the *temporal variance* of repeated frames
(photon transfer), the read noise from the dark variance, PRNU and the linear SNR from noise over
repeats. A noiseless device - lightonml's ``SimulatedOpuDevice`` behind ``lightonml:simulated``, or a
noiseless simulator - returns bit-identical frames for repeats of one pattern: there is no variance to
fit, and every one of those figures would be invented (or a fit would fail on zero weights).

This stage acquires ``R`` repeats of the probe's photon-transfer patterns at half the unit exposure
(mid-range signal, few clipped pixels) and ``R`` dark frames, and counts the pixels whose value
changes between repeats. None at all -> :attr:`NoiseCheckResult.measurable` is False and the runner
reports "no measurable noise" instead of running the noise stages.
"""

from __future__ import annotations

import numpy as np

from .plan import NOISE_CHECK_PATTERNS as PATTERNS
from .plan import NOISE_CHECK_REPEATS as REPEATS
from .probe import Probe
from .report import NoiseCheckResult
from .session import Session


def run_noise_check(s: Session, probe: Probe) -> NoiseCheckResult:
    t = 0.5 * probe.unit_exposure_us
    s.configure(n_features=s.plan.ptc_features, macro_pixel_mirrors=probe.macro_pixel_mirrors, exposure_us=t)
    lit = s.repeated(probe.patterns[:PATTERNS], REPEATS)  # (P, R, m)
    dark = s.dark(REPEATS)  # (R, m)
    frames = np.concatenate([lit, dark[None]], axis=0)
    varying = frames.max(axis=1) != frames.min(axis=1)  # (P + 1, m)
    n_varying = int(varying.sum())
    temporal_var = frames.var(axis=1, ddof=1)
    measurable = n_varying > 0
    dark_mean = float(dark.mean())
    if measurable:
        note = f"{n_varying} of {varying.size} pattern-pixels vary between repeats: noise is measurable"
    else:
        note = (f"no measurable noise: {REPEATS} repeats of {PATTERNS} patterns and of the dark frame are "
                f"bit-identical on all {frames.shape[2]} pixels (mean signal "
                f"{float(lit.mean() - dark_mean):.1f} DN, dark {dark_mean:.1f} DN); the EMVA 1288 "
                "figures (system gain K, read noise, dark current, DSNU/PRNU in e-, linear SNR) come from "
                "temporal variance and cannot be measured on this device")
    return NoiseCheckResult(
        exposure_us=float(s.dev.settings.exposure_us), patterns=PATTERNS, repeats=REPEATS,
        pixels=int(frames.shape[2]), varying_fraction=float(varying.mean()),
        max_temporal_var_dn2=float(temporal_var.max()), mean_signal_dn=float(lit.mean() - dark_mean),
        dark_mean_dn=dark_mean, dark_spatial_std_dn=float(dark.mean(axis=0).std(ddof=1)),
        measurable=measurable, note=note,
    )
