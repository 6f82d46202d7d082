"""Setting the light level and acquiring the planned frames, through :class:`drivers.Device` only.

Before any planned frame, :func:`set_light` probes the device like the calibration's probe
(:mod:`host.calibration.probe`: two dark frames, two frames of a bright pattern, the mean speckle
signal estimated robustly from the median) with the *brightest planned pattern* (half the data
features plus every anchor feature), then either keeps the settings and checks them
(``light="keep"``) or adapts the macro-pixel and exposure (``light="auto"``, never beyond the frame
time, so the device time of the plan is unchanged). A saturating or dark device is refused with
:class:`SaturatedDeviceError` / :class:`NoLightError` before the acquisition starts.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from drivers import Device, SaturationWarning

from .errors import NoLightError, SaturatedDeviceError, TMPlanError
from .plan import TMPlan

#: speckle is exponential: a mean signal of span / 8 puts exp(-8) = 3e-4 of the pixels of the
#: brightest frames at the ADC maximum (those values are left out of the lateration)
TARGET_SPAN_FRACTION = 1.0 / 8.0
#: refuse when more than this fraction of the brightest frames' pixels clip
MAX_SATURATED_FRACTION = 0.01
#: refuse when the brightest pattern's mean signal is below this (DN): the data frames would sit a
#: few quantization steps above dark
MIN_SIGNAL_DN = 4.0
#: frames per device sequence during the acquisition (also the progress-bar step)
CHUNK_FRAMES = 1024


@dataclass(frozen=True)
class LightCheck:
    """What the probe saw at the settings kept for the acquisition."""

    mean_signal_dn: float  # mean signal above dark of the brightest planned pattern
    saturated_fraction: float  # its pixels at the ADC maximum
    dark_median_dn: float
    macro_pixel_mirrors: int
    exposure_us: float
    probe_frames: int


def brightest_pattern(plan: TMPlan) -> np.ndarray:
    """(N,) bool: every other data feature lit (the signals' mean density) plus every anchor feature."""
    p = np.zeros(plan.device_features, dtype=bool)
    p[: plan.n_features : 2] = True
    p[plan.n_features :] = True
    return p


def _acquire(dev: Device, patterns: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SaturationWarning)  # clipping is measured here on purpose
        return np.asarray(dev.acquire(patterns, progress=False), dtype=np.float64)


def _probe(dev: Device, plan: TMPlan) -> tuple[float, float, float]:
    """(mean signal DN, saturated fraction, dark median DN) of the brightest pattern (4 frames)."""
    n = plan.device_features
    y = _acquire(dev, np.stack([np.zeros(n, bool), np.zeros(n, bool), brightest_pattern(plan),
                                brightest_pattern(plan)]))
    dark = y[:2].mean(axis=0)
    lit = y[2:]
    sat = float((lit >= dev.settings.adc_max_dn).mean())
    # the median of exponential speckle is ln 2 times its mean, and is unaffected by the clipped tail
    level = float(np.median(lit.mean(axis=0) - dark) / math.log(2.0))
    return level, sat, float(np.median(dark))


def max_macro(dev: Device, n_features: int) -> int:
    """Largest macro-pixel at which ``n_features`` fit the device's input ROI."""
    r = dev.settings.input_roi
    m = 1
    while (r.height_mirrors // (m + 1)) * (r.width_mirrors // (m + 1)) >= n_features:
        m += 1
    return m


def set_light(dev: Device, plan: TMPlan, light: Literal["auto", "keep"] = "auto") -> LightCheck:
    """Check (``keep``) or adapt (``auto``) the light level for ``plan``; refuse a device that cannot work.

    ``auto`` picks the smallest macro-pixel (from the current one) that reaches the target mean signal
    (span/8) at the current exposure, then scales the exposure to the target, never above the frame
    time. Raises :class:`SaturatedDeviceError` or :class:`NoLightError` (no planned frame taken).
    """
    if light not in ("auto", "keep"):
        raise TMPlanError(f"light must be 'auto' or 'keep', got {light!r}")
    s = dev.settings
    if s.n_features != plan.device_features:
        r, a = s.input_roi, s.macro_pixel_mirrors
        cap = (r.height_mirrors // a) * (r.width_mirrors // a)
        if plan.device_features > cap:
            raise TMPlanError(f"the plan's {plan.device_features} device features ({plan.n_features} data + "
                              f"{plan.anchor_features} anchor) do not fit the {r.height_mirrors}x"
                              f"{r.width_mirrors}-mirror input ROI with {a}-mirror macro-pixels (at most "
                              f"{cap}): enlarge the input ROI or use fewer features")
        dev.configure(n_features=plan.device_features)
    frames = 4
    level, sat, dark = _probe(dev, plan)
    adc_max = float(dev.settings.adc_max_dn)
    if dark >= adc_max - 1:
        raise SaturatedDeviceError(
            f"dark frames (all mirrors off) already sit at the ADC maximum {adc_max:.0f} DN: lower the black "
            "level / analog gain or block the stray light")
    span = adc_max - dark
    if light == "auto":
        target = TARGET_SPAN_FRACTION * span
        for _ in range(8):
            if abs(level / target - 1) < 0.25 and sat <= MAX_SATURATED_FRACTION:
                break
            st = dev.settings
            macro, t = st.macro_pixel_mirrors, st.exposure_us
            # below ~2 DN the median of quantized frames is no measure of the level: step up 4x
            ratio = 4.0 if level < 2.0 else min(target / level, 100.0)
            if sat > 0.3:  # the level is unreliable when clipped: step down hard
                ratio = min(ratio, 0.25)
            # light ~ macro^2 x exposure: grow the macro-pixel when the frame time caps the exposure
            new_macro = macro
            if t * ratio > st.frame_time_us:
                cap = max_macro(dev, plan.device_features)
                new_macro = min(cap, math.ceil(macro * math.sqrt(t * ratio / st.frame_time_us)))
            new_t = float(np.clip(t * ratio * (macro / new_macro) ** 2, 1.0, st.frame_time_us))
            changes: dict[str, Any] = {"exposure_us": new_t}
            if new_macro != macro:
                changes["macro_pixel_mirrors"] = new_macro
            dev.configure(**changes)
            level, sat, dark = _probe(dev, plan)
            frames += 4
    st = dev.settings
    where = (f"at {st.exposure_us:g} us exposure, {st.macro_pixel_mirrors}-mirror macro-pixels, "
             f"{st.analog_gain_db:g} dB")
    if sat > MAX_SATURATED_FRACTION:
        raise SaturatedDeviceError(
            f"the brightest planned pattern ({int(brightest_pattern(plan).sum())} lit features) puts "
            f"{sat:.1%} of the pixels at the ADC maximum {where} (at most {MAX_SATURATED_FRACTION:.0%} "
            "allowed): lower the exposure, the macro-pixel or the gain, or use --light auto")
    if level < MIN_SIGNAL_DN:
        raise NoLightError(
            f"the brightest planned pattern is only {level:.2f} DN above dark {where} (at least "
            f"{MIN_SIGNAL_DN:g} DN needed): check the laser, raise the exposure or macro-pixel, or use "
            "--light auto")
    return LightCheck(level, sat, dark, st.macro_pixel_mirrors, st.exposure_us, frames)


def acquire_plan(dev: Device, patterns: np.ndarray, progress: bool = True,
                 chunk: int = CHUNK_FRAMES) -> np.ndarray:
    """Frames (F, m) of the planned patterns, acquired in chunks with one progress bar.

    Saturation warnings are silenced: clipped values are expected in a few bright frames and are
    left out of the retrieval (counted in its diagnostics).
    """
    f = patterns.shape[0]
    out = np.empty((f, dev.n_outputs), dtype=dev.settings.frame_dtype)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=f, unit="frame", desc="tm-retrieve", leave=False)
    try:
        for lo in range(0, f, chunk):
            hi = min(f, lo + chunk)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SaturationWarning)
                out[lo:hi] = dev.acquire(patterns[lo:hi], progress=False)
            if bar is not None:
                bar.update(hi - lo)
    finally:
        if bar is not None:
            bar.close()
    return out
