"""The device as the calibration stages use it: a square calibration ROI, frame accounting, progress.

Only the :class:`drivers.Device` interface is used (configure, acquire, wait, status), so the stages
run unchanged on hardware, the VISA emulator and the in-process simulator.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from drivers import Device, DeviceSettings, SaturationWarning

from .plan import CalibrationPlan

MIN_EXPOSURE_US = 1.0
MAX_EXPOSURE_US = 1e6


class Session:
    """Shared state of one calibration run.

    Parameters
    ----------
    device:
        An open device. Its settings on entry are the operating point (``original``) and are
        restored by :meth:`restore`.
    plan:
        Frame counts of the stages.
    bar:
        A tqdm-like object with ``update(n)`` (frames), or None.
    """

    def __init__(self, device: Device, plan: CalibrationPlan, bar: Any = None) -> None:
        self.dev = device
        self.plan = plan
        self.bar = bar
        self.original: DeviceSettings = device.settings
        o = self.original.camera_roi
        side_h, side_w = min(plan.roi_side_px, o.height_px), min(plan.roi_side_px, o.width_px)
        self.roi = {"row": o.row + (o.height_px - side_h) // 2, "col": o.col + (o.width_px - side_w) // 2,
                    "height_px": side_h, "width_px": side_w}
        self.roi_shape = (side_h, side_w)
        self.adc_max = float(self.original.adc_max_dn)
        self.frames = 0

    # ------------------------------------------------------------------ settings
    def max_macro(self, n_features: int) -> int:
        """Largest macro-pixel for which ``n_features`` fit the input ROI."""
        r = self.original.input_roi
        m = 1
        while (r.height_mirrors // (m + 1)) * (r.width_mirrors // (m + 1)) >= n_features:
            m += 1
        return m

    def configure(self, *, exposure_us: float | None = None, **changes: Any) -> DeviceSettings:
        """Apply the calibration ROI and ``changes``; the frame time grows to fit the exposure."""
        if exposure_us is not None:
            exposure_us = float(np.clip(exposure_us, MIN_EXPOSURE_US, MAX_EXPOSURE_US))
            changes["exposure_us"] = exposure_us
            changes["frame_time_us"] = max(self.original.frame_time_us, exposure_us)
        return self.dev.configure(camera_roi=self.roi, **changes)

    def restore(self) -> None:
        self.dev.configure(self.original)

    # ------------------------------------------------------------------ frames
    def acquire(self, patterns: np.ndarray) -> np.ndarray:
        """Frames (b, m) as float64 DN for patterns (b, n)."""
        with warnings.catch_warnings():
            # clipping is measured on purpose (saturation capacity): the driver's warning is expected
            warnings.simplefilter("ignore", SaturationWarning)
            y = self.dev.acquire(np.asarray(patterns, dtype=np.uint8), progress=False)
        self._count(len(patterns))
        return np.asarray(y, dtype=np.float64)

    def repeated(self, patterns: np.ndarray, repeats: int) -> np.ndarray:
        """Frames (P, R, m): each pattern ``repeats`` times in a row (pattern-major, one sequence)."""
        p = np.repeat(np.asarray(patterns, dtype=np.uint8), repeats, axis=0)
        return self.acquire(p).reshape(len(patterns), repeats, -1)

    def dark(self, repeats: int) -> np.ndarray:
        """Frames (R, m) with every mirror off."""
        return self.acquire(np.zeros((repeats, self.dev.n_features), dtype=np.uint8))

    def count_frames(self, n: int) -> None:
        self._count(n)

    def _count(self, n: int) -> None:
        self.frames += n
        if self.bar is not None:
            self.bar.update(n)

    def device_time_s(self) -> float:
        return float(self.dev.status().device_time_s)


def half_lit_patterns(n_patterns: int, n_features: int, seed: int) -> np.ndarray:
    """Fixed random patterns (P, n) uint8 with exactly half of the features lit."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n_patterns, n_features), dtype=np.uint8)
    for k in range(n_patterns):
        out[k, rng.permutation(n_features)[: n_features // 2]] = 1
    return out
