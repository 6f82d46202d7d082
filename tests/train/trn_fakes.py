"""Test-only devices for the trainer tests: an in-process Device around opu.Simulator, and a
wrapper that fails after a number of acquisitions (a dropped connection)."""

from __future__ import annotations

import numpy as np

import opu
from drivers.base import Device, DeviceIdentity, DeviceSettings, DeviceStatus
from drivers.errors import DeviceDisconnected
from opu.dmd import unpack_patterns


class SimulatorDevice(Device):
    """A minimal simulated Device (model ends in -SIM) built on ``opu.Simulator``."""

    def __init__(self, config: opu.OPUConfig, fail_after_sequences: int | None = None) -> None:
        super().__init__("test-sim")
        self.base = config
        self.sim: opu.Simulator | None = None
        self.fail_after_sequences = fail_after_sequences
        self.sequences = 0
        self._dev_settings = DeviceSettings(
            exposure_us=config.camera.exposure_us, frame_time_us=config.camera.frame_time_us,
            camera_roi=config.camera.roi.model_dump(),
        )

    def _open(self) -> None:
        self._build(self._dev_settings)

    def _close(self) -> None:
        pass

    def _query_identity(self) -> DeviceIdentity:
        return DeviceIdentity("test", "OPU-TEST-SIM", "0", "0")

    def _read_settings(self) -> DeviceSettings:
        return self._dev_settings

    def _write_settings(self, settings: DeviceSettings) -> None:
        self._build(settings)

    def _build(self, s: DeviceSettings) -> None:
        cfg = self.base.replace(
            dmd={"macro_pixel_mirrors": s.macro_pixel_mirrors},
            camera={"exposure_us": s.exposure_us, "frame_time_us": s.frame_time_us,
                    "roi": s.camera_roi.model_dump()},
        )
        if self.sim is not None and self.sim.n_features == s.n_features:
            self.sim.reconfigure(cfg)
        else:
            clock = self.sim.clock if self.sim is not None else None
            self.sim = opu.Simulator(cfg, s.n_features)
            if clock is not None:
                self.sim.clock = clock
        self._dev_settings = s

    def _pattern_memory(self) -> int:
        return 100_000

    def _run_sequence(self, packed: np.ndarray) -> np.ndarray:
        self.sequences += 1
        if self.fail_after_sequences is not None and self.sequences > self.fail_after_sequences:
            raise DeviceDisconnected("connection reset by peer (test)", resource=self.resource)
        frames = self.sim.acquire(unpack_patterns(packed, self.sim.n_features))
        return frames if frames.dtype != np.float32 else frames.astype(np.float32)

    def _query_status(self) -> DeviceStatus:
        return DeviceStatus(True, 25.0, self.sim.clock.frames, self.sim.clock.device_time_s)

    def _wait(self, seconds: float) -> None:
        self.sim.idle(seconds)

    def sync_clock(self, frames_total: int, device_time_s: float) -> None:
        self.sim.clock.frames = int(frames_total)
        self.sim.clock.device_time_s = float(device_time_s)
