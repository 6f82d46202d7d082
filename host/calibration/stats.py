"""Per-pixel temporal statistics of repeated frames, binning and the fits the stages share.

Shapes: repeated frames of P patterns are ``(P, R, m)`` (pattern, repeat, pixel), DN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize

#: a pair of successive frames whose mean squared difference exceeds this multiple of the pattern's
#: median is a jump (medium drift step, laser mode hop) and is left out of the variance
JUMP_FACTOR = 1.6


@dataclass
class TemporalStats:
    """Per pattern and pixel: mean (P, m) (``raw_mean`` before the common-mode correction), temporal
    variance (P, m), saturation mask (P, m): some repeat at the ADC maximum or at 0.

    ``gain_factors`` (P, R): the common per-frame factor removed (1 where not estimated);
    ``pairs_kept`` (P,): successive pairs used for the variance; ``raw_var`` (P, m): the plain
    temporal variance before any correction (a pixel held at full well shows only read and rounding
    noise there, whereas the common-mode correction would modulate it).
    """

    mean: np.ndarray
    raw_mean: np.ndarray
    var: np.ndarray
    saturated: np.ndarray
    gain_factors: np.ndarray
    pairs_kept: np.ndarray
    raw_var: np.ndarray


def temporal_stats(frames: np.ndarray, adc_max: float, dark: np.ndarray | None = None,
                   common_mode: bool = False, clip_signal_dn: float | None = None) -> TemporalStats:
    """Mean and variance over repeats, robust to drift jumps, optionally without the laser common mode.

    The variance is the mean squared successive difference / 2 over the kept pairs (a drift step
    between two frames changes the speckle and is rejected as a jump). ``common_mode``: each frame's
    signal ``y - dark`` is divided by its ratio to the pattern's mean frame, estimated on pixels never
    clipped; this removes a per-frame multiplicative (laser power) factor. ``clip_signal_dn``: signal
    (above ``dark``) from which a pixel counts as clipped even below the ADC maximum (full well).
    """
    y = np.asarray(frames, dtype=np.float64)
    p, r, _ = y.shape
    raw_mean = y.mean(axis=1)
    raw_max = y.max(axis=1)
    raw_min = y.min(axis=1)
    raw_var0 = (raw_max == raw_min)
    raw_var = y.var(axis=1, ddof=1) if r > 1 else np.zeros_like(raw_mean)
    saturated = (raw_max >= adc_max) | (raw_min <= 0)
    if clip_signal_dn is not None and dark is not None:
        # near a full well below the ADC range: pixels touching it no longer follow the light
        saturated |= (raw_max - dark[None, :]) >= 0.95 * clip_signal_dn
    factors = np.ones((p, r))
    if common_mode and dark is not None:
        s = y - dark[None, None, :]
        ok = ~saturated
        for k in range(p):
            sel = ok[k]
            if sel.sum() < 16:
                continue
            tot = s[k][:, sel].sum(axis=1)
            ref = tot.mean()
            if ref <= 0 or (tot <= 0).any():  # no light to measure a factor on (it would divide by ~0)
                continue
            factors[k] = tot / ref
        y = dark[None, None, :] + s / factors[:, :, None]
    d = np.diff(y, axis=1)
    d2 = d * d
    pair_ms = d2.mean(axis=2)  # (P, R-1)
    med = np.median(pair_ms, axis=1, keepdims=True)
    keep = pair_ms <= JUMP_FACTOR * np.maximum(med, 1e-12)
    kept = keep.sum(axis=1)
    var = (d2 * keep[:, :, None]).sum(axis=1) / (2.0 * np.maximum(kept, 1))[:, None]
    mean = y.mean(axis=1)
    # a pixel pinned at one value (full-well plateau) has exactly zero variance; keep it exact
    var = np.where(raw_var0, 0.0, var)
    return TemporalStats(mean, raw_mean, var, saturated, factors, kept, raw_var)


@dataclass
class Bins:
    x: np.ndarray
    y: np.ndarray
    y_se: np.ndarray
    count: np.ndarray


def bin_points(x: np.ndarray, y: np.ndarray, edges: np.ndarray, min_count: int = 20) -> Bins:
    """Mean x, mean y and standard error of mean y in each bin of ``edges`` (bins with few points dropped)."""
    idx = np.digitize(x, edges) - 1
    xs, ys, ses, ns = [], [], [], []
    for b in range(len(edges) - 1):
        sel = idx == b
        n = int(sel.sum())
        if n < min_count:
            continue
        yy = y[sel]
        xs.append(float(x[sel].mean()))
        ys.append(float(yy.mean()))
        ses.append(float(yy.std(ddof=1) / math.sqrt(n)))
        ns.append(n)
    return Bins(np.array(xs), np.array(ys), np.array(ses), np.array(ns, dtype=int))


def weighted_line(x: np.ndarray, y: np.ndarray, se: np.ndarray, zero_offset: bool = False
                  ) -> tuple[float, float, float, float]:
    """Weighted least squares y = a x + c: (a, se_a, c, se_c); errors scaled by sqrt(reduced chi^2) if > 1."""
    w = 1.0 / np.maximum(se, 1e-300) ** 2
    A = x[:, None] if zero_offset else np.stack([x, np.ones_like(x)], axis=1)
    Aw = A * np.sqrt(w)[:, None]
    yw = y * np.sqrt(w)
    coef, *_ = np.linalg.lstsq(Aw, yw, rcond=None)
    cov = np.linalg.inv(Aw.T @ Aw)
    dof = max(len(x) - A.shape[1], 1)
    chi2 = float(((Aw @ coef - yw) ** 2).sum()) / dof
    cov = cov * max(chi2, 1.0)
    if zero_offset:
        return float(coef[0]), float(math.sqrt(cov[0, 0])), 0.0, 0.0
    return float(coef[0]), float(math.sqrt(cov[0, 0])), float(coef[1]), float(math.sqrt(cov[1, 1]))


def fit_exponential_decay(t: np.ndarray, c: np.ndarray, se: np.ndarray) -> tuple[float, float, float, float]:
    """Fit c(t) = A exp(-t / tau): returns (A, se_A, tau, se_tau); tau in the unit of t."""
    pos = c > 0
    slope, _, icpt, _ = weighted_line(t[pos], np.log(c[pos]), se[pos] / c[pos])
    tau0 = -1.0 / slope if slope < 0 else float(t.max()) * 10
    popt, pcov = optimize.curve_fit(lambda tt, a, tau: a * np.exp(-tt / tau), t, c,
                                    p0=(math.exp(icpt), tau0), sigma=se, absolute_sigma=False,
                                    bounds=([0, 1e-9], [2.0, np.inf]), maxfev=5000)
    err = np.sqrt(np.diag(pcov))
    return float(popt[0]), float(err[0]), float(popt[1]), float(err[1])


def neighbour_correlation(maps: np.ndarray, shape: tuple[int, int]) -> float:
    """Mean Pearson correlation of horizontally and vertically adjacent pixels of maps (k, h*w)."""
    h, w = shape
    z = maps.reshape(-1, h, w)
    z = (z - z.mean(axis=(1, 2), keepdims=True)) / np.maximum(z.std(axis=(1, 2), keepdims=True), 1e-12)
    ch = (z[:, :, 1:] * z[:, :, :-1]).mean()
    cv = (z[:, 1:, :] * z[:, :-1, :]).mean()
    return float((ch + cv) / 2)
