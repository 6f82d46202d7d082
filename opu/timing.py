"""Simulated device clock and counters: what a real device would have taken.

One frame occupies ``frame_time_us`` of device time (the exposure fits inside it). The clock only
moves with frames and with explicit idle time, never with host wall time, so a simulation is
reproducible however fast the host is.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DeviceClock:
    """Frames acquired, device time and energy of one simulated device.

    Attributes
    ----------
    frames:
        Frames acquired since construction (or :meth:`reset`).
    device_time_s:
        Simulated device time, seconds: frames x frame time + idle time.
    electrical_power_w:
        Wall power used for the energy figure (:attr:`energy_j`).
    """

    electrical_power_w: float = 30.0
    frames: int = 0
    device_time_s: float = 0.0

    def frame_start_times(self, n_frames: int, frame_time_us: float) -> list[float]:
        """Device times (s) at which the next ``n_frames`` frames start."""
        dt = frame_time_us * 1e-6
        return [self.device_time_s + k * dt for k in range(n_frames)]

    def tick_frames(self, n_frames: int, frame_time_us: float) -> None:
        """Account for ``n_frames`` frames of ``frame_time_us`` each."""
        self.frames += n_frames
        self.device_time_s += n_frames * frame_time_us * 1e-6

    def idle(self, seconds: float) -> None:
        """Let ``seconds`` of device time pass without frames (the medium keeps drifting)."""
        if seconds < 0:
            raise ValueError(f"idle time must be >= 0 s, got {seconds}")
        self.device_time_s += seconds

    @property
    def energy_j(self) -> float:
        """Energy a real device at ``electrical_power_w`` would have used, joules."""
        return self.device_time_s * self.electrical_power_w

    def reset(self) -> None:
        self.frames = 0
        self.device_time_s = 0.0
