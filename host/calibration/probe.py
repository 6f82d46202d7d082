"""First look at the device: is there light, is it saturated, how bright are the calibration patterns.

The probe picks the macro-pixel size (so the saturation signal is reached near the operating
exposure) and measures ``unit_exposure_us``: the exposure at which the mean signal of the half-lit
photon-transfer patterns equals the saturation signal. Every later stage sets its exposures as
fractions of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import NoLightError, SaturatedDeviceError
from .session import MAX_EXPOSURE_US, MIN_EXPOSURE_US, Session, half_lit_patterns

#: probe exposures never exceed this (a 0.2 s frame is slow on hardware but still affordable)
PROBE_MAX_EXPOSURE_US = 200_000.0


@dataclass
class Probe:
    macro_pixel_mirrors: int
    lit_mirrors: int
    patterns: np.ndarray  # (P, n) uint8 half-lit photon-transfer patterns
    dark_dn: np.ndarray  # (m,) dark frame at the operating exposure
    saturation_signal_dn: float  # signal (above dark) at which frames clip, first estimate
    unit_exposure_us: float  # exposure giving a mean pattern signal equal to the saturation signal


def _level(s: Session, pattern: np.ndarray, dark: np.ndarray) -> tuple[float, float]:
    """(mean signal estimated from the median of exponential speckle, fraction clipped) for 2 frames."""
    y = s.acquire(np.repeat(pattern[None], 2, axis=0))
    clipped = float((y >= s.adc_max).mean())
    sig = y.mean(axis=0) - dark
    return float(np.median(sig) / np.log(2.0)), clipped


def run_probe(s: Session) -> Probe:
    plan = s.plan
    n = plan.ptc_features
    o = s.original
    macro = min(o.macro_pixel_mirrors, s.max_macro(n))
    t = o.exposure_us
    s.configure(n_features=n, macro_pixel_mirrors=macro, exposure_us=t, bit_depth=o.bit_depth,
                analog_gain_db=o.analog_gain_db)
    dark = s.dark(2)
    d0 = dark.mean(axis=0)
    if np.median(d0) >= s.adc_max - 1:
        raise SaturatedDeviceError(
            f"dark frames (all mirrors off) already sit at the ADC maximum {s.adc_max:.0f} DN: the black "
            "level or the stray light is too high; lower the black level / analog gain or block the light"
        )
    noise = max(float(np.std(dark[0] - dark[1]) / np.sqrt(2)), 0.5)
    patterns = half_lit_patterns(plan.ptc_patterns, n, seed=20240501)
    span = s.adc_max - float(np.median(d0))
    level, clipped = _level(s, patterns[0], d0)
    # too bright: shorten the exposure, then shrink the macro-pixel
    while clipped > 0.3:
        if t > MIN_EXPOSURE_US:
            t = max(t / 4, MIN_EXPOSURE_US)
            s.configure(exposure_us=t)
        elif macro > 1:
            macro = max(1, macro // 2)
            s.configure(macro_pixel_mirrors=macro)
        else:
            raise SaturatedDeviceError(
                f"{clipped:.0%} of the pixels are at the ADC maximum even at {MIN_EXPOSURE_US:g} us with "
                f"{n // 2} single mirrors lit: the light is too strong for this camera setting; lower the "
                "laser power or the analog gain"
            )
        level, clipped = _level(s, patterns[0], d0)
    # too dim: grow the macro-pixel, then the exposure, until the mean signal is ~40 % of the span
    target = 0.4 * span
    max_macro = s.max_macro(n)
    for _ in range(8):
        if level >= 0.5 * target:
            break
        if macro < max_macro:
            ratio = target / max(level, 1e-3 * noise)
            macro = int(min(max_macro, max(macro + 1, np.ceil(macro * np.sqrt(ratio)))))
            s.configure(macro_pixel_mirrors=macro)
        elif t < PROBE_MAX_EXPOSURE_US:
            t = min(PROBE_MAX_EXPOSURE_US, t * min(target / max(level, 1e-3), 100.0))
            s.configure(exposure_us=t)
            d0 = s.dark(2).mean(axis=0)
        else:
            break
        level, clipped = _level(s, patterns[0], d0)
    if level < 3 * noise:
        raise NoLightError(
            f"no light: lit patterns are only {level:.2f} DN above the dark frame (noise {noise:.2f} DN) "
            f"with {n // 2} features of {macro}x{macro} mirrors at {t:.0f} us; check that the laser is on "
            "and the optical path is open"
        )
    while clipped > 0.05 and t > MIN_EXPOSURE_US:  # stay linear for the slope
        t = max(t / 2, MIN_EXPOSURE_US)
        s.configure(exposure_us=t)
        level, clipped = _level(s, patterns[0], d0)
    rate = level / t  # DN per us
    # find where the frames clip: well above the ADC span, at least 70 % of the pixels are pinned
    t_sat = min(MAX_EXPOSURE_US, 3.0 * span / rate)
    s.configure(exposure_us=t_sat)
    d_sat = s.dark(2).mean(axis=0)
    y = s.acquire(np.repeat(patterns[:1], 2, axis=0)).mean(axis=0)
    sat_signal = float(np.percentile(y - d_sat, 90))
    if sat_signal < 3 * noise:
        raise NoLightError(f"signal at {t_sat:.0f} us is only {sat_signal:.2f} DN: no usable light")
    unit = min(sat_signal / rate, MAX_EXPOSURE_US)
    return Probe(macro, (n // 2) * macro**2, patterns, d0, sat_signal, unit)
