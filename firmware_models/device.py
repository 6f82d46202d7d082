"""The device core: state machine, settings, pattern memory, acquisition, frame buffer, ``SIM:`` ops.

Python calls only: it never sees bytes, and raises :class:`FirmwareError` where the SCPI front end
(:mod:`firmware_models.scpi_front`) queues the error. Its parts: the settings transaction
(:mod:`.settings`), the error queue (:mod:`.status`), the armed faults (:mod:`.faults`) and the
optics and clock (:mod:`.bench`).

State machine (``ACQ:STAT?``)::

    IDLE --setting--> CONFIGURED --SEQ:DATA--> ARMED --ACQ:STAR--> ACQUIRING --> READY
      any failed ACQ:STAR --> ERROR; *RST --> IDLE; *CLS leaves ERROR
"""

from __future__ import annotations

import numbers
import threading
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

import numpy as np

import opu

from .bench import OpticalBench
from .errors import ERROR_TEXT, FirmwareError, float_in, int_in
from .faults import FaultPlan
from .framing import MAX_BLOCK_BYTES
from .protocol import MANUFACTURER, SETTING_KEYS
from .settings import (
    Settings,
    SettingsTxn,
    check_consistent,
    check_value,
    device_size,
    power_on_settings,
)
from .status import ErrorQueue

MODEL = "OPU-1140-SIM"
FIRMWARE_VERSION = "1.0.0"
#: SIM:FAULt SATurate multiplies the light of the next acquisition by this factor
SATURATE_FACTOR = 1000.0
#: largest SIM:IDLE, seconds (about 31 years)
MAX_IDLE_S = 1e9


class State(StrEnum):
    """Acquisition state (``ACQ:STAT?``)."""

    IDLE = "IDLE"
    CONFIGURED = "CONFIGURED"
    ARMED = "ARMED"
    ACQUIRING = "ACQUIRING"
    READY = "READY"
    ERROR = "ERROR"


class DeviceCore:
    """The emulated OPU's firmware as Python calls. Parameters: see :class:`~firmware_models.Controller`."""

    def __init__(self, config: opu.OPUConfig | None = None, *, serial: str = "SIM0001",
                 pattern_memory: int = 4096, frame_buffer_bytes: int = 512 * 2**20,
                 medium: opu.RecoveredMedium | None = None) -> None:
        config = opu.realistic(seed=0) if config is None else config
        if medium is not None and not isinstance(medium, opu.RecoveredMedium):
            raise opu.ConfigError(f"medium must be an opu.RecoveredMedium, got {type(medium).__name__}")
        if not isinstance(config, opu.OPUConfig):
            raise opu.ConfigError(f"config must be an opu.OPUConfig, got {type(config).__name__}")
        if not (isinstance(pattern_memory, numbers.Integral) and pattern_memory >= 1):
            raise opu.ConfigError(f"pattern_memory must be an integer >= 1, got {pattern_memory!r}")
        if not (isinstance(frame_buffer_bytes, numbers.Integral) and frame_buffer_bytes >= 1):
            raise opu.ConfigError(f"frame_buffer_bytes must be an integer >= 1, got {frame_buffer_bytes!r}")
        if not serial.isprintable() or "," in serial or not serial:
            raise opu.ConfigError(f"serial must be printable text without commas, got {serial!r}")
        try:
            power_on = power_on_settings(config)
        except FirmwareError as exc:
            raise opu.ConfigError(f"this config cannot run on the device: {exc.message}") from None
        self.identity: tuple[str, str, str, str] = (MANUFACTURER, MODEL, serial, FIRMWARE_VERSION)
        self.pattern_memory = int(pattern_memory)
        self.frame_buffer_bytes = int(frame_buffer_bytes)
        self._lock = threading.RLock()
        self.bench = OpticalBench(config, medium)
        self.errors = ErrorQueue()
        self.faults = FaultPlan()
        self.txn = SettingsTxn(power_on, device_size(config))
        self._sequence: np.ndarray | None = None
        self._frames: np.ndarray | None = None
        self._acquiring = False
        self._failed = False
        self._configured = False
        self._laser = True
        self.reset()

    # ================================================================== state and lifecycle
    @property
    def state(self) -> State:
        if self._acquiring:
            return State.ACQUIRING
        if self._failed:
            return State.ERROR
        if self._frames is not None:
            return State.READY
        if self._sequence is not None:
            return State.ARMED
        return State.CONFIGURED if self._configured else State.IDLE

    def reset(self) -> None:
        """``*RST``: power-on settings, sequence and frames cleared, laser on, state IDLE.

        The optics (bench config, seed, noise switch, transmission matrix, drift state, clock)
        and the error queue are kept.
        """
        with self._lock:
            self.txn.replace(power_on_settings(self.bench.config), device_size(self.bench.config))
            self.bench.invalidate()
            self._sequence = None
            self._frames = None
            self._failed = False
            self._configured = False
            self._laser = True

    def clear_status(self) -> None:
        """``*CLS``: empty the error queue and the event status register; leave the ERROR state."""
        with self._lock:
            self.errors.clear()
            self._failed = False

    # ================================================================== settings
    def get_settings(self) -> dict[str, Any]:
        """The current settings (a fresh dict; ROIs as dicts)."""
        with self._lock:
            return self.txn.snapshot()

    def setting(self, name: str) -> Any:
        """The current value of one setting (not a copy)."""
        return self.txn.values[name]

    def set_setting(self, name: str, value: Any) -> None:
        """Change one setting; range (-222) and consistency (-221) are checked, nothing changes on error."""
        self.set_settings({name: value})

    def set_settings(self, changes: Mapping[str, Any]) -> None:
        """Change several settings atomically: consistency (-221) is checked on the result only."""
        with self._lock:
            self.commit()
            try:
                for name, value in changes.items():
                    self.txn.stage(name, value)
            except FirmwareError:
                self.txn.rollback()
                raise
            self.commit()

    def stage(self, name: str, value: Any) -> None:
        """Stage one setting in the open transaction (the SCPI front end's setting commands)."""
        self.txn.stage(name, value)

    def commit(self) -> None:
        """Check the staged settings for consistency, then apply their side effects (or roll back)."""
        old = self.txn.commit()
        if old is None:
            return
        self._configured = True
        self.bench.invalidate()
        self._frames = None  # frames belong to the settings they were taken with
        self._failed = False
        if self.txn.values["n_features"] != old["n_features"]:
            self._sequence = None  # its rows have the old pattern width

    # ================================================================== the optical bench
    @property
    def config(self) -> opu.OPUConfig:
        """The configuration in effect: bench config with the settings (and SIM:NOISe) applied."""
        with self._lock:
            return self.bench.effective_config(self.txn.values)

    def limits(self) -> tuple[int, int, int, int]:
        """(sensor height, sensor width, DMD height, DMD width) of the bench."""
        s = self.txn.size
        return s.sensor_height_px, s.sensor_width_px, s.dmd_height_mirrors, s.dmd_width_mirrors

    # ================================================================== pattern sequence
    @property
    def bytes_per_pattern(self) -> int:
        return (self.txn.values["n_features"] + 7) // 8

    @property
    def sequence_length(self) -> int:
        with self._lock:
            return 0 if self._sequence is None else int(self._sequence.shape[0])

    def upload_patterns(self, packed: np.ndarray) -> None:
        """Replace the sequence with bit-packed patterns uint8 (b, ceil(n/8)), MSB first."""
        with self._lock:
            self.commit()
            p = packed
            if not isinstance(p, np.ndarray) or p.dtype != np.uint8 or p.ndim != 2:
                desc = f"{p.dtype} {p.shape}" if isinstance(p, np.ndarray) else type(p).__name__
                raise FirmwareError(-160, f"patterns must be a uint8 array (b, {self.bytes_per_pattern}), "
                                    f"got {desc}")
            bpp = self.bytes_per_pattern
            n = self.txn.values["n_features"]
            if p.shape[1] != bpp:
                raise FirmwareError(-160, f"{n} features need {bpp} bytes per pattern, got {p.shape[1]}")
            self._store_sequence(np.array(p, dtype=np.uint8, order="C", copy=True), n)

    def upload_block(self, data: memoryview) -> None:
        """``SEQ:DATA <block>``: the block's bytes as patterns of the current width."""
        bpp = self.bytes_per_pattern
        if len(data) % bpp:
            n = self.txn.values["n_features"]
            raise FirmwareError(-160, f"block of {len(data)} bytes is not a whole number of patterns of "
                                f"{bpp} bytes (n_features={n}, ceil(n/8) bytes each)")
        b = len(data) // bpp
        if b > self.pattern_memory:
            raise FirmwareError(201, f"{b} patterns exceed the pattern memory of {self.pattern_memory}")
        p = np.frombuffer(data, dtype=np.uint8).reshape(b, bpp).copy()
        self._store_sequence(p, self.txn.values["n_features"])

    def _store_sequence(self, p: np.ndarray, n: int) -> None:
        b = p.shape[0]
        if b < 1:
            raise FirmwareError(-222, "a sequence needs at least 1 pattern")
        if b > self.pattern_memory:
            raise FirmwareError(201, f"{b} patterns exceed the pattern memory of {self.pattern_memory}")
        pad = (-n) % 8
        if pad and np.any(p[:, -1] & np.uint8((1 << pad) - 1)):
            raise FirmwareError(-161, f"non-zero padding bits after feature {n} (the last {pad} bits of each "
                                "pattern must be 0): corrupted pattern data")
        self._sequence = p
        self._frames = None
        self._failed = False

    def sequence_bytes(self) -> bytes:
        """``SEQ:DATA?``: the sequence's bytes (202 if none)."""
        if self._sequence is None:
            raise FirmwareError(202, "no sequence uploaded")
        return self._sequence.tobytes()

    def clear_sequence(self) -> None:
        """``SEQ:CLE``: forget the sequence and any frames."""
        with self._lock:
            self.commit()
            self._sequence = None
            self._frames = None
            self._failed = False

    # ================================================================== acquisition
    def _fail(self, code: int, detail: str) -> FirmwareError:
        self._failed = True
        self._frames = None
        return FirmwareError(code, detail)

    def start_acquisition(self) -> None:
        """``ACQ:STAR``: acquire the uploaded sequence (one frame per pattern) into the frame buffer.

        Advances the frame counter and device time by b frames x frame time. Frames with pixels
        at the ADC maximum put a 210 warning on the error queue (also through this Python API).
        """
        with self._lock:
            self.commit()
            if self._sequence is None:
                raise self._fail(202, "upload a pattern sequence (SEQ:DATA) before ACQ:STAR")
            if not self._laser:
                raise self._fail(203, "the laser is off; turn it on with LAS:STAT ON")
            s = self.txn.values
            b = self._sequence.shape[0]
            m = s["camera_roi"]["height_px"] * s["camera_roi"]["width_px"]
            need = b * m * (1 if s["bit_depth"] == 8 else 2)
            if need > self.frame_buffer_bytes:
                raise self._fail(205, f"{b} frames of {m} pixels need {need} bytes; the frame buffer "
                                 f"holds {self.frame_buffer_bytes}")
            self._frames = None
            self._acquiring = True
            try:
                config = self.config
                if self.faults.take("SATURATE") is not None:
                    lit = config.laser.photons_per_mirror_us * SATURATE_FACTOR
                    config = config.replace(laser={"photons_per_mirror_us": lit})
                sim = self.bench.simulator(config, s["n_features"])
                frames = sim.acquire(opu.unpack_patterns(self._sequence, s["n_features"]))
            except FirmwareError:
                raise
            except Exception as exc:
                raise self._fail(-200, f"acquisition failed: {type(exc).__name__}: {exc}") from exc
            finally:
                self._acquiring = False
            self._frames = np.ascontiguousarray(frames.astype("<u2" if frames.itemsize == 2 else np.uint8,
                                                              copy=False))
            self._failed = False
            adc_max = 2 ** s["bit_depth"] - 1
            sat = int(np.count_nonzero(self._frames == adc_max))
            if sat:
                self.errors.push(210, f"{ERROR_TEXT[210]}; {sat} of {self._frames.size} pixels at the ADC "
                                 f"maximum {adc_max} DN (lower the exposure or gain)")

    @property
    def frames_ready(self) -> int:
        with self._lock:
            return 0 if self._frames is None else int(self._frames.shape[0])

    def fetch_frames(self, start: int = 0, count: int | None = None) -> np.ndarray:
        """Frames ``[start, start + count)`` of the buffer: (count, m) uint8 or little-endian uint16."""
        with self._lock:
            return np.array(self.frame_view(start, count), copy=True)

    def frame_view(self, start: int, count: int | None) -> np.ndarray:
        """The frames ``[start, start + count)`` without a copy (``FETC:FRAM?``)."""
        self.commit()
        if self._frames is None:
            raise FirmwareError(204, f"no frames ready (state {self.state.value}); run ACQ:STAR first")
        total = self._frames.shape[0]
        start = int_in(start, "start", 0, total - 1)
        count = total - start if count is None else int_in(count, "count", 1, total - start)
        return self._frames[start : start + count]

    # ================================================================== status, errors
    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "laser_on": self._laser,
                "temperature_c": self.temperature_c,
                "frames_total": int(self.bench.clock.frames),
                "device_time_s": float(self.bench.clock.device_time_s),
                "state": self.state.value,
            }

    @property
    def temperature_c(self) -> float:
        return self.bench.temperature_c

    @property
    def laser_on(self) -> bool:
        return self._laser

    def set_laser(self, on: bool) -> None:
        with self._lock:
            self._laser = bool(on)

    def next_error(self) -> tuple[int, str]:
        """Oldest error-queue entry, removed: (code, message); (0, "No error") when empty."""
        with self._lock:
            return self.errors.next()

    @property
    def error_count(self) -> int:
        return len(self.errors)

    def push_error(self, code: int, message: str) -> None:
        """Put an error on the queue (transports use it for framing errors)."""
        with self._lock:
            self.errors.push(code, message)

    # ================================================================== SIM: subsystem
    @property
    def seed(self) -> int:
        return self.bench.config.seed

    def _new_unit(self, config: opu.OPUConfig) -> None:
        """A new simulated unit: clock and frame counter to zero, medium rebuilt, frames dropped."""
        self.bench.power_cycle(config)
        self._frames = None
        self._failed = False

    def set_seed(self, seed: int) -> None:
        """Re-seed the bench: a new simulated unit (clock, frame counter and medium start afresh).

        Settings and the uploaded sequence are kept; frames in the buffer are dropped.
        """
        with self._lock:
            self.commit()
            v = int_in(seed, "seed", 0, 2**32 - 1)
            self._new_unit(self.bench.config.replace(seed=v))

    @property
    def noise(self) -> bool:
        return self.bench.noise

    def set_noise(self, on: bool) -> None:
        """Noise off: ideal camera noise figures (no shot/read/dark/PRNU/DSNU/laser fluctuation), same ADC."""
        with self._lock:
            self.bench.noise = bool(on)
            self.bench.invalidate()
            self._frames = None

    def idle(self, seconds: float) -> None:
        """Let ``seconds`` of device time pass with no frames; the medium drifts."""
        with self._lock:
            self.commit()
            self.bench.idle(float_in(seconds, "idle time", 0.0, MAX_IDLE_S, "s"))

    def set_clock(self, frames: int, device_time_s: float) -> None:
        """Move the simulated unit's clock forward to (``frames``, ``device_time_s``) (SIM:CLOCk).

        Resumes an interrupted run exactly: frame noise is keyed by the global frame counter, and
        the medium is advanced one drift step at a time, as the frames of the original run did.
        The clock never goes back (-222).
        """
        with self._lock:
            self.commit()
            clock = self.bench.clock
            f = int_in(frames, "frame counter", clock.frames, 2**62)
            t = float_in(device_time_s, "device time", clock.device_time_s, 1e12, "s")
            # built now so that the drift steps one at a time
            sim = self.bench.simulator(self.config, self.txn.values["n_features"])
            sim.set_clock(f, t)

    def load_config(self, config: opu.OPUConfig) -> None:
        """Replace the bench (e.g. a fitted digital twin): its camera/DMD values become the settings.

        ``n_features`` is kept (it must fit the new input ROI, else -221). Like SIM:SEED this
        starts a new simulated unit (clock and frame counter from zero); the sequence is kept.
        """
        with self._lock:
            self.commit()
            if not isinstance(config, opu.OPUConfig):
                raise FirmwareError(-104, f"config must be an opu.OPUConfig, got {type(config).__name__}")
            new: Settings = power_on_settings(config)
            new["n_features"] = self.txn.values["n_features"]
            size = device_size(config)
            for k in SETTING_KEYS:
                new[k] = check_value(k, new[k], size)
            check_consistent(new)
            self.txn.replace(new, size)
            self._configured = True
            self._new_unit(config)

    def inject_fault(self, kind: str, arg: float | int | None = None) -> None:
        """Arm a fault (SIM:FAULt): DROP, DELAY ms, TRUNCATE, CORRUPT, ERROR code, SATURATE, CLEAR.

        DROP/TRUNCATE/CORRUPT hit the next response that carries a block, DELAY the next
        response; they act in the transport (the SCPI front end), so a direct Python caller only
        sees SATURATE (next acquisition) and ERROR (pushed now).
        """
        with self._lock:
            self.faults.arm(kind, arg, self.errors)

    @property
    def pending_faults(self) -> dict[str, Any]:
        return self.faults.pending

    def max_input_block_bytes(self) -> int:
        """Largest block payload a transport should accept (pattern memory at the largest n, capped)."""
        _, _, dh, dw = self.limits()
        return min(MAX_BLOCK_BYTES, max(self.pattern_memory * ((dh * dw + 7) // 8), 16 * 2**20))
