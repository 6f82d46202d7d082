"""A certified, data-independent lower bound sigma_min on the device noise of each projection output.

docs/privacy.md section 3. For a signed projection with the anchor (or complement) scheme, output k is
``cross_k * scale / sqrt(ref_k)`` with ``cross = [(y(x+ + r) - y(x+)) - (y(x- + r) - y(x-))] / 2``.
Each frame carries independent read noise (sigma_r^2, DN^2) and shot noise (K x mean signal, DN^2),
then the ADC rounds. Whatever x, ``|B(x+r)|^2 + |Bx|^2 >= |Br|^2 / 2`` (parallelogram), so the two
frames of a pair hold at least ref_k / 2 DN of signal between them. The floor of a pair is the smallest
*quantised* variance the two frames can have under that constraint:

    P_k = min over I1 + I2 = rho ref_k / 2 of  g(sigma_r^2 + K I1) + g(sigma_r^2 + K I2)
    sigma_min_k = sqrt(2 P_k / 4) * scale / sqrt(ref_k)

where g(v) = min over mu of Var(round(N(mu, v))) - rounding can hide noise smaller than one DN,
and we do not pretend otherwise. Weak outputs (reference floored) get no shot term.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import chi2, norm

import opu
from drivers.base import Device


class CertificationError(ValueError):
    """The noise floor cannot be certified (the message says what is missing)."""


@dataclass(frozen=True)
class CameraNoise:
    """Temporal noise parameters the floor is built from.

    gain_dn_per_e: system gain K (DN per electron) at the run's analog gain.
    read_noise_e: read noise (electrons, std). source: where they came from.
    quantised: whether the ADC rounds (then the floor accounts for it).
    """

    gain_dn_per_e: float
    read_noise_e: float
    source: str
    quantised: bool = True

    @property
    def read_noise_dn(self) -> float:
        return self.read_noise_e * self.gain_dn_per_e


def camera_noise(device: Device, calibration_path: str | None = None) -> CameraNoise:
    """K and read noise from a calibration report (``opu calibrate``), else a simulator's configuration.

    A report's figures are taken at their lower 2-sigma end (a floor must not be optimistic) and K is
    rescaled to the device's current analog gain.
    """
    gain_db = float(device.settings.analog_gain_db)
    if calibration_path is not None:
        rep = json.loads(Path(calibration_path).read_text())
        try:
            k = rep["photon_transfer"]["system_gain_dn_per_e"]
            rn = rep["dark"]["read_noise_e"]
            rep_db = float(rep["settings"]["analog_gain_db"])
        except (KeyError, TypeError) as err:
            raise CertificationError(f"{calibration_path} lacks {err} (needs the dark and photon-transfer "
                                     "stages of opu calibrate)") from None
        if k["value"] is None or rn["value"] is None:
            raise CertificationError(f"{calibration_path}: K or the read noise was not measured")
        k_lo = max(0.0, k["value"] - 2 * (k["uncertainty"] or 0.0)) * 10 ** ((gain_db - rep_db) / 20)
        rn_lo = max(0.0, rn["value"] - 2 * (rn["uncertainty"] or 0.0))
        return CameraNoise(k_lo, rn_lo, f"calibration report {calibration_path}")
    if not device.identity.is_simulated:
        raise CertificationError("real hardware needs a calibration report for the noise floor: run "
                                 "`opu calibrate` and pass --dp-calibration calibration.json")
    cam = device.sim_config().camera
    k = cam.system_gain_dn_per_e
    rn = cam.read_noise_e if cam.shot_noise or cam.read_noise_e > 0 else 0.0
    if not cam.shot_noise:
        # a noiseless simulated camera: only read noise (if any) is real noise
        return CameraNoise(k, rn, "simulator configuration (shot noise off)", cam.bit_depth is not None)
    return CameraNoise(k, rn, "simulator configuration", cam.bit_depth is not None)


_MU = np.linspace(0.0, 1.0, 41)[:-1]
_FLOOR_RESOLUTION_DN2 = 1e-4


def quantised_variance_floor(v: np.ndarray) -> np.ndarray:
    """g(v) = min over mu of Var(round(X)), X ~ N(mu, v) (DN^2), elementwise for v >= 0 (DN^2).

    For v large it tends to v + 1/12; for v << 1 it is ~0 (all the mass in one bin); values below
    1e-4 DN^2 are returned as 0 (not credited).
    """
    v = np.asarray(v, dtype=np.float64)
    s = np.sqrt(np.maximum(v, 1e-18))[..., None, None]
    k = np.arange(-12, 14, dtype=np.float64)  # bins around mu in [0, 1): enough for s <= ~2
    out = np.empty(v.shape)
    big = v > 4.0  # Sheppard regime: Var(round X) >= v exactly enough (periodic terms < 1e-30)
    out[big] = v[big]
    if (~big).any():
        ss = s[~big]
        mu = _MU[None, :, None]
        p = norm.cdf((k + 0.5 - mu) / ss) - norm.cdf((k - 0.5 - mu) / ss)  # (n, mu, k)
        m1 = (p * k).sum(-1)
        var = (p * k * k).sum(-1) - m1 * m1
        out[~big] = np.maximum(var.min(axis=1), 0.0)
    # below (0.01 DN)^2 the rounded output is constant in almost every frame: a "floor" that small is
    # not noise one can rely on (nor check with repeated frames), so it is not credited at all
    out[out < _FLOOR_RESOLUTION_DN2] = 0.0
    return out


def sigma_min_per_output(cal: opu.LinearCalibration, cam: CameraNoise, reference_safety: float = 0.5,
                         splits: int = 21) -> np.ndarray:
    """Certified sigma_min (m,) float64 of a signed projection's output, in projection units."""
    ref = np.asarray(cal.reference_dn, dtype=np.float64)
    pair_signal = np.where(cal.weak_outputs, 0.0, reference_safety * ref / 2.0)  # DN, I1 + I2
    rn2 = cam.read_noise_dn**2
    frac = np.linspace(0.0, 0.5, splits)  # I1 = frac * S, I2 = (1 - frac) * S (symmetric)
    v1 = rn2 + cam.gain_dn_per_e * pair_signal[:, None] * frac[None, :]
    v2 = rn2 + cam.gain_dn_per_e * pair_signal[:, None] * (1.0 - frac[None, :])
    pair = quantised_variance_floor(v1) + quantised_variance_floor(v2) if cam.quantised else v1 + v2
    p = pair.min(axis=1)  # DN^2 of one pair
    # the ADC clips at 0: a dark level within 4 read-noise stds of it cuts the noise, so no credit there
    unclipped = np.asarray(cal.dark_dn) >= 4.0 * cam.read_noise_dn + 0.5
    return np.where(unclipped, np.sqrt(2.0 * p / 4.0) * cal.scale / np.sqrt(ref), 0.0)


@dataclass
class NoiseCheck:
    """Repeated-frame check of sigma_min: per input, the per-output std over ``repeats`` projections."""

    inputs: dict[str, np.ndarray]  # name -> measured std (m,)
    sigma_min: np.ndarray
    repeats: int
    allowed_ratio: float  # std / sigma_min below this counts as a violation
    dark_std_dn: np.ndarray
    dark_floor_dn: float

    @property
    def violations(self) -> int:
        n = sum(int((s < self.allowed_ratio * self.sigma_min).sum()) for s in self.inputs.values())
        return n + int((self.dark_std_dn < self.allowed_ratio * self.dark_floor_dn).sum())

    def as_dict(self) -> dict:
        pos = self.sigma_min > 0  # outputs with a credited floor
        d = {name: {"median_std": float(np.median(s)), "min_ratio_to_sigma_min":
                    float(np.min(s[pos] / self.sigma_min[pos])) if pos.any() else None}
             for name, s in self.inputs.items()}
        return {"repeats": self.repeats, "allowed_ratio": self.allowed_ratio,
                "credited_outputs": int(pos.sum()), "outputs": int(self.sigma_min.shape[0]),
                "sigma_min_median": float(np.median(self.sigma_min)),
                "sigma_min_min": float(self.sigma_min.min()), "sigma_min_max": float(self.sigma_min.max()),
                "dark_floor_dn": self.dark_floor_dn, "dark_std_median_dn": float(np.median(self.dark_std_dn)),
                "inputs": d, "violations": self.violations}


def allowed_ratio(repeats: int, n_tests: int, level: float = 1e-3) -> float:
    """One-sided chi^2 lower quantile of std/sigma for ``repeats`` samples, Bonferroni over n_tests."""
    dof = repeats - 1
    return math.sqrt(chi2.ppf(level / n_tests, dof) / dof)


def measure_noise(device: Device, n_classes: int, sigma_min: np.ndarray, cam: CameraNoise,
                  scheme: str = "anchor", precision: int = 6, repeats: int = 64) -> NoiseCheck:
    """Project the noise-minimising inputs ``repeats`` times each (every sample its own frames) and
    measure the per-output std: the all-off error (t = 0), the all-on error (every class lit), and
    raw dark frames (against the quantised read-noise floor)."""
    if repeats < 8:
        raise CertificationError(f"repeats must be >= 8 for a meaningful std, got {repeats}")
    m = sigma_min.shape[0]
    inputs = {"all_off": np.zeros((repeats, n_classes)), "all_on": np.ones((repeats, n_classes))}
    stds = {}
    for name, x in inputs.items():
        y = device.linear_transform(x, scheme, precision, share_repeats=False)
        stds[name] = y.std(axis=0, ddof=1)
    dark = device.acquire(np.zeros((repeats, device.n_features), dtype=bool)).astype(np.float64)
    floor = float(np.sqrt(quantised_variance_floor(np.array([cam.read_noise_dn**2]))[0])) \
        if cam.quantised else cam.read_noise_dn
    ratio = allowed_ratio(repeats, 3 * m)
    return NoiseCheck(stds, sigma_min, repeats, ratio, dark.std(axis=0, ddof=1), floor)
