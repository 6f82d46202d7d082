"""Auto-exposure: pick DMD macro-pixels and exposure so the frames use the ADC without clipping.

Works on any :class:`drivers.base.Device` (simulator, emulator, hardware): it only acquires
patterns and reads frames. The brightest pattern a projection ever shows is "all features lit"
(data + anchor), so the step measures dark frames and all-on frames and scales the light until the
all-on frames' 99.9th percentile sits at ``target_frac`` of the ADC range.

Why a percentile and not the mean: speckle intensity is exponentially distributed
(P(I > t mean) = exp(-t)), so a mean at 25 % of the range would clip a few percent of the pixels
(and every training step would warn). The 99.9th percentile of fully developed speckle is
ln(1000) = 6.9 times its mean; with ``target_frac = 0.6`` the all-on mean lands near 9 % and the
anchor reference (half the lit features) near 4 % of the range, while the rare maxima of a whole
training step (about 12 to 14 means over 10^5 to 10^6 pixel values) stay below the top code.

Light scales as (mirrors per feature) x exposure: macro-pixels (``k x k`` mirrors) give the coarse
step without costing frame rate, exposure the fine step, up to ``max_exposure_frac`` of the frame
time.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from drivers.base import DMD_MAX_HEIGHT_MIRRORS, DMD_MAX_WIDTH_MIRRORS, Device
from drivers.errors import DriverError


@dataclass(frozen=True)
class ExposureReport:
    """What auto-exposure measured and chose (levels in DN)."""

    macro_pixel_mirrors: int
    exposure_us: float
    dark_dn: float
    all_on_mean_dn: float
    all_on_p999_dn: float
    adc_max_dn: int
    iterations: int
    frames: int
    converged: bool

    @property
    def p999_frac(self) -> float:
        return (self.all_on_p999_dn) / self.adc_max_dn

    def as_dict(self) -> dict:
        return {**asdict(self), "p999_frac": self.p999_frac}


def max_macro_pixel(n_features: int, height: int = DMD_MAX_HEIGHT_MIRRORS,
                    width: int = DMD_MAX_WIDTH_MIRRORS) -> int:
    """Largest k such that n_features k x k macro-pixels fit the input ROI."""
    k = 1
    while (height // (k + 1)) * (width // (k + 1)) >= n_features:
        k += 1
    return k


def auto_expose(
    device: Device,
    target_frac: float = 0.6,
    percentile: float = 99.9,
    repeats: int = 8,
    max_iterations: int = 6,
    tolerance: float = 0.15,
    max_exposure_frac: float = 0.8,
) -> ExposureReport:
    """Adjust ``macro_pixel_mirrors`` and ``exposure_us`` of an open, configured device.

    The device's ``n_features`` must already be what the projection uses (data + anchor). Each
    iteration acquires ``repeats`` dark and ``repeats`` all-on frames. Raises :class:`DriverError`
    when no light reaches the camera even at the largest macro-pixel and exposure.
    """
    if not 0 < target_frac < 1:
        raise ValueError(f"target_frac must be in (0, 1), got {target_frac}")
    s = device.settings
    n = s.n_features
    roi = s.input_roi
    k_max = max_macro_pixel(n, roi.height_mirrors, roi.width_mirrors)
    adc = s.adc_max_dn
    frames = 0
    converged = False
    target = target_frac * adc

    def measure() -> tuple[float, float, float]:
        nonlocal frames
        patterns = np.zeros((2 * repeats, n), dtype=bool)
        patterns[repeats:] = True
        y = np.asarray(device.acquire(patterns), dtype=np.float64)
        frames += y.shape[0]
        on = y[repeats:]
        return float(y[:repeats].mean()), float(on.mean()), float(np.percentile(on, percentile))

    it = 0
    for it in range(1, max_iterations + 1):  # noqa: B007 (reported)
        s = device.settings
        dark, mean, p = measure()
        if abs(p - target) <= tolerance * target and p < adc:
            converged = True
            break
        if p >= adc:  # clipped: the percentile says nothing about the true level; cut hard
            factor = 0.25
        elif p - dark < 1.0:  # no measurable light yet
            factor = 64.0
        else:
            factor = (target - dark) / (p - dark)
        light = s.macro_pixel_mirrors**2 * s.exposure_us * factor  # wanted mirror-microseconds
        max_exp = max_exposure_frac * s.frame_time_us
        k = min(k_max, max(1, math.ceil(math.sqrt(light / max_exp))))
        exposure = float(np.clip(light / k**2, 1.0, max_exp))
        if k == s.macro_pixel_mirrors and math.isclose(exposure, s.exposure_us, rel_tol=1e-3):
            break  # at a limit: nothing left to change
        device.configure(macro_pixel_mirrors=k, exposure_us=round(exposure, 1))
    else:  # the last change is not measured yet
        dark, mean, p = measure()
        converged = abs(p - target) <= tolerance * target and p < adc
    s = device.settings
    if p - dark < 1.0:
        raise DriverError(
            f"auto-exposure: no light on the camera (all-on frames {mean:.1f} DN vs dark {dark:.1f} DN) "
            f"even at {s.macro_pixel_mirrors}-mirror macro-pixels and {s.exposure_us} us; check the laser",
            resource=device.resource,
        )
    return ExposureReport(s.macro_pixel_mirrors, s.exposure_us, dark, mean, p, adc, it, frames, converged)
