"""The private feedback: bounded encoding, projection (digital or on the device), certified noise.

docs/privacy.md sections 1-3. Per sample i the released vector is u_i = [A t_i ; c e_i] plus noise of
std >= sigma on every coordinate, where t_i is a two-sparse unbiased encoding of the error e_i, A the
feedback matrix (digital, or the device's effective matrix measured through the linear scheme) and
c = top_scale sqrt(m). :class:`PrivateFeedback` wraps the trainer's DigitalFeedback/OpticalFeedback;
:meth:`PrivateFeedback.project` returns the noisy hidden-layer feedback (b, m) and the noisy error of the
output layer (b, C).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

import opu

from .certify import CameraNoise, sigma_min_per_output
from .config import PrivacyConfig


def encode_error(e: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Two-sparse unbiased ternary encoding t (b, C) float64 of errors e = p - onehot(y) (b, C).

    With probability s = 1 - p_y: t = 1_j - 1_y, j a wrong class drawn with probability p_j / s;
    otherwise t = 0. E[t] = e; every t has at most two entries of size 1 (so ||A t|| is bounded by a
    maximum over a finite set, whatever the data).
    """
    e = np.asarray(e, dtype=np.float64)
    b, c = e.shape
    y = np.asarray(y, dtype=np.int64)
    rows = np.arange(b)
    p = e.copy()
    p[rows, y] += 1.0  # back to the softmax probabilities
    p = np.clip(p, 0.0, 1.0)
    wrong = p.copy()
    wrong[rows, y] = 0.0
    s = wrong.sum(axis=1)  # = 1 - p_y
    u = rng.random(b)
    cdf = np.cumsum(wrong, axis=1)
    j = np.minimum((cdf < (u * s)[:, None]).sum(axis=1), c - 1)
    fire = rng.random(b) < s
    t = np.zeros((b, c))
    t[rows[fire], j[fire]] = 1.0
    t[rows[fire], y[fire]] = -1.0
    return t


def support(n_classes: int) -> np.ndarray:
    """All values t can take: 0 and 1_j - 1_k (j != k): (C(C-1) + 1, C) float64."""
    rows = [np.zeros(n_classes)]
    for j in range(n_classes):
        for k in range(n_classes):
            if j != k:
                t = np.zeros(n_classes)
                t[j], t[k] = 1.0, -1.0
                rows.append(t)
    return np.stack(rows)


def feedback_bound(a: np.ndarray, neighbouring: str, column_error: float = 0.0) -> float:
    """Sensitivity of the feedback part: max ||A(t - t')|| (replace-one) or max ||A t|| (add/remove).

    ``a`` (m, C) the feedback matrix (or its estimate); ``column_error`` an upper bound on the norm of
    each column of the estimation error, added as ||d||_1 x column_error (||d||_1 <= 4 resp. 2).
    """
    a = np.asarray(a, dtype=np.float64)
    v = support(a.shape[1]) @ a.T  # (n_T, m)
    g = v @ v.T
    nrm2 = np.diag(g)
    if neighbouring == "add_remove":
        return float(math.sqrt(max(nrm2.max(), 0.0)) + 2.0 * column_error)
    d2 = nrm2[:, None] + nrm2[None, :] - 2.0 * g
    return float(math.sqrt(max(d2.max(), 0.0)) + 4.0 * column_error)


def sensitivity(delta_v: float, top_scale_c: float, neighbouring: str) -> float:
    """Sensitivity Delta of the whole per-sample vector [A t ; c e] (docs/privacy.md section 1)."""
    e_part = 2.0 * math.sqrt(2.0) if neighbouring == "replace_one" else math.sqrt(2.0)
    return math.sqrt(delta_v**2 + (top_scale_c * e_part) ** 2)


@dataclass
class EpochNoise:
    """What the mechanism uses during one epoch (recomputed at each epoch start)."""

    delta_v: float  # feedback-part sensitivity
    sensitivity: float  # Delta of the whole vector
    sigma: float  # per-coordinate noise std target (certified total)
    sigma_min: np.ndarray  # (m,) credited device noise (zeros when not credited)
    host_sigma: np.ndarray  # (m,) host noise std added to the feedback coordinates

    @property
    def device_variance_share(self) -> float:
        return float(np.mean(self.sigma_min**2) / self.sigma**2) if self.sigma > 0 else 0.0


class PrivateFeedback:
    """Private wrapper of a trainer feedback (digital ``matrix`` or optical ``device``).

    ``z_aggregate``: the planned effective noise multiplier times the aggregation factor, i.e. the
    per-coordinate noise std is sigma = z Delta / sqrt(b_agg) (b_agg = batch for aggregation "batch",
    1 for "sample"); set by the plan with :meth:`set_noise_multiplier`.
    """

    def __init__(self, inner, cfg: PrivacyConfig, n_outputs: int, n_classes: int, *,
                 camera: CameraNoise | None = None, credit_device: bool = False) -> None:
        self.inner = inner
        self.cfg = cfg
        self.m = int(n_outputs)
        self.n_classes = int(n_classes)
        self.c = cfg.top_scale * math.sqrt(self.m)
        self.camera = camera
        self.optical = hasattr(inner, "device")
        self.credit_device = bool(credit_device and self.optical and camera is not None)
        self.z: float | None = None
        self.b_agg: int = 1
        self.noise: EpochNoise | None = None
        self.history: list[EpochNoise] = []
        self.saturation_warnings = 0

    # -------------------------------------------------------------- the plan's inputs
    def measure(self) -> tuple[float, np.ndarray]:
        """(feedback-part sensitivity Delta_v, credited sigma_min (m,)) for the current epoch."""
        cfg = self.cfg
        if not self.optical:
            dv = feedback_bound(np.asarray(self.inner.matrix), cfg.neighbouring)
            return dv, np.zeros(self.m)
        dev, fb = self.inner.device, self.inner.cfg
        r = cfg.sensitivity_repeats
        x = np.tile(np.eye(self.n_classes), (r, 1))
        y = dev.linear_transform(x, fb.scheme, fb.precision, share_repeats=False)
        y = y.reshape(r, self.n_classes, self.m)
        a_hat = y.mean(axis=0).T  # (m, C)
        col_err = 3.0 * float(np.sqrt((y.var(axis=0, ddof=1) / r).sum(axis=1)).max())
        dv = feedback_bound(a_hat, cfg.neighbouring, col_err) * (1.0 + cfg.sensitivity_margin)
        if self.credit_device:
            cal = self.inner._projector().calibration
            smin = sigma_min_per_output(cal, self.camera, cfg.reference_safety)
        else:
            smin = np.zeros(self.m)
        return dv, smin

    def set_noise_multiplier(self, z: float, b_agg: int) -> None:
        self.z, self.b_agg = float(z), int(b_agg)

    def _epoch_noise(self) -> EpochNoise:
        if self.z is None:
            raise RuntimeError("PrivateFeedback needs the plan's noise multiplier (set_noise_multiplier)")
        dv, smin = self.measure()
        delta = sensitivity(dv, self.c, self.cfg.neighbouring)
        sigma = self.z * delta / math.sqrt(self.b_agg)
        host = np.sqrt(np.maximum(sigma**2 - smin**2, 0.0))
        if not self.cfg.host_noise and host.max() > 0:
            raise NoiseShortfall(f"host noise is off and the device's certified noise (min sigma_min "
                                 f"{smin.min():.3g}) is below the needed sigma {sigma:.3g} this epoch")
        return EpochNoise(dv, delta, sigma, smin, host)

    # -------------------------------------------------------------- trainer interface
    def begin_epoch(self) -> EpochNoise:
        self.inner.begin_epoch()
        self.noise = self._epoch_noise()
        self.history.append(self.noise)
        return self.noise

    def project(self, e, y, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(noisy feedback (b, m) float32, noisy output-layer error (b, C) float32) for errors e (b, C)."""
        if self.noise is None:
            raise RuntimeError("call begin_epoch() before project()")
        e = np.asarray(e, dtype=np.float64)
        t = encode_error(e, np.asarray(y), rng)
        if self.optical:
            fbc = self.inner.cfg
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", opu.SaturationWarning)
                fb = self.inner.device.linear_transform(t, fbc.scheme, fbc.precision,
                                                        share_repeats=fbc.share_repeats)
            self.saturation_warnings += sum(issubclass(w.category, opu.SaturationWarning) for w in caught)
        else:
            fb = t @ np.asarray(self.inner.matrix, dtype=np.float64).T
        n = self.noise
        fb = fb + rng.standard_normal(fb.shape) * n.host_sigma[None, :]
        top = e + rng.standard_normal(e.shape) * (n.sigma / self.c)
        return fb.astype(np.float32), top.astype(np.float32)


class NoiseShortfall(RuntimeError):
    """The device alone is not noisy enough and host noise is disabled."""
