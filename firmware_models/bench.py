"""The emulated device's optics and clock: the bench config, the :class:`opu.Simulator` built from it
with the device settings applied, the noise switch and the device clock.

The clock (frame counter, device time) belongs to the device and is handed to every Simulator built
here, so frame ``f``'s noise is the same whatever the sequence of rebuilds.
"""

from __future__ import annotations

import math
from typing import Any

import opu
from opu.timing import DeviceClock

from .settings import Settings


class OpticalBench:
    """Bench config (``config``), noise switch (``noise``), clock (``clock``) and the Simulator."""

    def __init__(self, config: opu.OPUConfig, medium: opu.RecoveredMedium | None = None) -> None:
        self.config = config
        self.medium = medium  # a recovered matrix (digital twin) instead of the seed's medium
        self.noise = True
        self.clock = DeviceClock(electrical_power_w=config.electrical_power_w)
        self._sim: opu.Simulator | None = None
        self._effective: opu.OPUConfig | None = None

    def invalidate(self) -> None:
        """The settings or the noise switch changed: rebuild the effective config when next needed."""
        self._effective = None

    def effective_config(self, s: Settings) -> opu.OPUConfig:
        """The bench config with settings ``s`` and the noise switch applied (cached until
        :meth:`invalidate`)."""
        if self._effective is None:
            cam: dict[str, Any] = {
                "roi": dict(s["camera_roi"]),
                "exposure_us": s["exposure_us"],
                "frame_time_us": s["frame_time_us"],
                "bit_depth": s["bit_depth"],
                "analog_gain_db": s["analog_gain_db"],
            }
            laser: dict[str, Any] = {}
            if not self.noise:
                cam.update(shot_noise=False, read_noise_e=0.0, dark_current_e_per_s=0.0, prnu_rel=0.0,
                           dsnu_e=0.0)
                laser["power_fluctuation_rel"] = 0.0
            r = s["input_roi"]
            dmd = {"roi_row": r["row"], "roi_col": r["col"], "roi_height_mirrors": r["height_mirrors"],
                   "roi_width_mirrors": r["width_mirrors"], "macro_pixel_mirrors": s["macro_pixel_mirrors"]}
            self._effective = self.config.replace(camera=cam, dmd=dmd, laser=laser)
        return self._effective

    def simulator(self, config: opu.OPUConfig, n_features: int) -> opu.Simulator:
        """The Simulator for ``config`` and ``n_features``, keeping the optics where possible."""
        sim = self._sim
        if sim is None or sim.n_features != n_features:
            sim = opu.Simulator(config, n_features, medium=self.medium)
            sim.clock = self.clock
            self._sync_medium(sim)
        elif sim.config != config:
            tm = sim.tm
            sim.reconfigure(config)
            sim.clock = self.clock
            if sim.tm is not tm:
                self._sync_medium(sim)
        self._sim = sim
        return sim

    def _sync_medium(self, sim: opu.Simulator) -> None:
        """A rebuilt medium starts at drift step 0: bring it to the device time in one jump."""
        med = sim.medium
        if med.tau_s:
            target = med.step_at(self.clock.device_time_s)
            if target > med.step:
                med.advance_to_step(target, exact_steps=False)

    def power_cycle(self, config: opu.OPUConfig | None = None) -> None:
        """A new simulated unit (optionally from a new bench config): clock and frame counter to zero,
        medium rebuilt when next needed."""
        if config is not None:
            self.config = config
        self.clock = DeviceClock(electrical_power_w=self.config.electrical_power_w)
        self._sim = None
        self._effective = None

    def idle(self, seconds: float) -> None:
        """Let ``seconds`` of device time pass with no frames; the medium drifts."""
        if self._sim is not None:
            self._sim.idle(seconds)
        else:
            self.clock.idle(seconds)

    @property
    def temperature_c(self) -> float:
        """Sensor temperature, degC: warms from 24 to 32 degC over the first hour, slow 0.15 degC ripple."""
        t = self.clock.device_time_s
        return round(24.0 + 8.0 * (1.0 - math.exp(-t / 1800.0)) + 0.15 * math.sin(2 * math.pi * t / 900.0), 3)
