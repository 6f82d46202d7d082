"""A minimal in-process ``drivers.Device`` around ``opu.Simulator`` for the calibration tests.

Used only when ``drivers.connect("sim:...")`` is not available (the firmware model is optional for
these tests); it implements the Device primitives the way the firmware maps settings to the model.
"""

from __future__ import annotations

import numpy as np

import opu
from drivers.base import CameraRoi, Device, DeviceIdentity, DeviceSettings, DeviceStatus, InputRoi


def settings_from_config(cfg: opu.OPUConfig, n_features: int = 1024) -> DeviceSettings:
    c, d = cfg.camera, cfg.dmd
    h, w = d.roi_shape_mirrors
    return DeviceSettings(
        n_features=n_features, exposure_us=c.exposure_us, frame_time_us=c.frame_time_us,
        bit_depth=c.bit_depth or 12, analog_gain_db=c.analog_gain_db,
        camera_roi=CameraRoi(**c.roi.model_dump()),
        input_roi=InputRoi(row=d.roi_row, col=d.roi_col, height_mirrors=h, width_mirrors=w),
        macro_pixel_mirrors=d.macro_pixel_mirrors)


def config_from_settings(cfg: opu.OPUConfig, s: DeviceSettings) -> opu.OPUConfig:
    r = s.input_roi
    return cfg.replace(
        camera={"roi": s.camera_roi.model_dump(), "exposure_us": s.exposure_us,
                "frame_time_us": s.frame_time_us, "bit_depth": s.bit_depth,
                "analog_gain_db": s.analog_gain_db},
        dmd={"roi_row": r.row, "roi_col": r.col, "roi_height_mirrors": r.height_mirrors,
             "roi_width_mirrors": r.width_mirrors, "macro_pixel_mirrors": s.macro_pixel_mirrors})


class TinySimDevice(Device):
    """``Device`` over an ``opu.Simulator``; ``fail_after_frames`` drops the link like a cable pull."""

    def __init__(self, config: opu.OPUConfig, fail_after_frames: int | None = None) -> None:
        super().__init__("tinysim")
        self.base_config = config
        self._s = settings_from_config(config)
        self.sim = opu.Simulator(config_from_settings(config, self._s), self._s.n_features)
        self.fail_after_frames = fail_after_frames

    def _open(self) -> None:
        pass

    def _close(self) -> None:
        pass

    def _query_identity(self) -> DeviceIdentity:
        return DeviceIdentity("LightOn-like", "OPU-TINY-SIM", "0", "test")

    def _read_settings(self) -> DeviceSettings:
        return self._s

    def _write_settings(self, settings: DeviceSettings) -> None:
        cfg = config_from_settings(self.base_config, settings)
        if settings.n_features != self.sim.n_features:
            clock, medium_step = self.sim.clock, self.sim.medium.step
            self.sim = opu.Simulator(cfg, settings.n_features)
            self.sim.clock = clock
            self.sim.medium.advance_to_step(medium_step, exact_steps=False)
        else:
            self.sim.reconfigure(cfg)
        self._s = settings

    def _pattern_memory(self) -> int:
        return 4096

    def _run_sequence(self, packed: np.ndarray) -> np.ndarray:
        if self.fail_after_frames is not None and self.sim.clock.frames >= self.fail_after_frames:
            from drivers.errors import DeviceDisconnected

            raise DeviceDisconnected("connection reset by peer", resource=self.resource)
        return self.sim.acquire(opu.unpack_patterns(packed, self._s.n_features))

    def _query_status(self) -> DeviceStatus:
        return DeviceStatus(laser_on=True, temperature_c=25.0, frames_total=self.sim.clock.frames,
                            device_time_s=self.sim.clock.device_time_s)

    def _wait(self, seconds: float) -> None:
        self.sim.idle(seconds)
