"""The noise a DFA user gets: SNR of linear projections A x for each scheme over an exposure sweep.

At the device's own macro-pixel, ``V`` fixed ternary vectors are projected ``R`` times each (one call
per scheme and exposure, including the scheme's own calibration frames). Per output:
noise = variance over repeats, signal = variance over vectors of the repeat mean minus noise / R;
SNR = mean signal / mean noise (a power ratio). The best exposure is the highest-SNR one whose frames
did not clip (no :class:`drivers.SaturationWarning`).
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from drivers import SaturationWarning

from .report import LinearSNRResult, SchemeSNR, fig
from .session import Session

SCHEMES = ("anchor", "complement")


def _snr(y: np.ndarray) -> tuple[float, float]:
    """y (R, V, m): (SNR, standard error)."""
    r, v, m = y.shape
    noise = y.var(axis=0, ddof=1).mean(axis=0)  # (m,)
    signal = y.mean(axis=0).var(axis=0, ddof=1) - noise / r
    snr = float(signal.mean() / noise.mean())
    rel = math.sqrt(2.0 / (v * m) + 2.0 / ((r - 1) * v * m))
    return snr, snr * rel


def run_linear_snr(s: Session, sat_dn: float, resp_dn_per_mirror_us: float) -> LinearSNRResult:
    plan, o = s.plan, s.original
    n = plan.linear_features
    macro = min(o.macro_pixel_mirrors, s.max_macro(2 * n))
    lit = (4.0 / 3.0) * n * macro**2  # mirrors lit in a typical anchor frame |B(x + r)|^2
    exposures = sorted({o.exposure_us, *(float(np.clip(f * sat_dn / (resp_dn_per_mirror_us * lit), 1, 1e6))
                                          for f in plan.linear_levels)})
    rng = np.random.default_rng(20240504)
    x = rng.integers(-1, 2, size=(plan.linear_vectors, n)).astype(np.float64)
    xr = np.tile(x, (plan.linear_repeats, 1))
    out = []
    s.configure(n_features=2 * n, macro_pixel_mirrors=macro, exposure_us=o.exposure_us)
    for scheme in SCHEMES:
        snrs, sats, ses = [], [], []
        fps = s.dev.projector(n, scheme).scheme.frames_per_signed
        for t in exposures:
            s.configure(exposure_us=t)
            before = s.dev.frames_acquired
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", SaturationWarning)
                y = s.dev.linear_transform(xr, scheme=scheme)
            s.count_frames(s.dev.frames_acquired - before)
            sats.append(any(issubclass(w.category, SaturationWarning) for w in caught))
            snr, se = _snr(y.reshape(plan.linear_repeats, plan.linear_vectors, -1))
            snrs.append(snr)
            ses.append(se)
        ok = [i for i, sat in enumerate(sats) if not sat]
        best = max(ok, key=lambda i: snrs[i]) if ok else None
        i_op = exposures.index(o.exposure_us)
        out.append(SchemeSNR(
            scheme=scheme, frames_per_signed=fps, exposures_us=exposures, snr=snrs, saturated=sats,
            best_exposure_us=exposures[best] if best is not None else None,
            snr_at_operating=fig(snrs[i_op], ses[i_op], "1",
                                 note="saturated" if sats[i_op] else "signal/noise variance per output"),
            snr_best=fig(snrs[best] if best is not None else None, ses[best] if best is not None else None,
                         "1", note="" if best is not None else "every exposure saturated"),
        ))
    return LinearSNRResult(n_features=n, vectors=plan.linear_vectors, repeats=plan.linear_repeats,
                           operating_exposure_us=o.exposure_us, schemes=out)
