"""The device controller as a model: settings, pattern memory, sequencer, frame buffer, error queue.

Transport-neutral: :meth:`Controller.handle` takes one complete program message (bytes, see
docs/protocol.md) and returns the response bytes; the TCP server (:mod:`firmware_models.server`)
and any other transport only move bytes. The Python methods are the same operations for an
in-process host (they raise :class:`FirmwareError` instead of queueing the error).

The optical bench is an :class:`opu.Simulator` built lazily from the bench config with the device
settings mapped onto it, when an acquisition needs it. The device's clock (frame counter, device
time) belongs to the controller and is handed to every Simulator it builds, so frame ``f``'s noise
is the same whatever the sequence of rebuilds, and a batch acquired in one sequence or in several
gives bit-identical frames.

State machine (``ACQ:STAT?``)::

    IDLE --setting--> CONFIGURED --SEQ:DATA--> ARMED --ACQ:STAR--> ACQUIRING --> READY
      any failed ACQ:STAR --> ERROR; *RST --> IDLE; *CLS leaves ERROR
"""

from __future__ import annotations

import math
import numbers
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import pydantic

import opu
from opu.timing import DeviceClock

from .errors import ERROR_TEXT, FirmwareError
from .framing import MAX_BLOCK_BYTES, block_header
from .scpi import (
    Command,
    HeaderPattern,
    ScpiError,
    expect_args,
    format_float,
    mentions_query,
    parse_message,
    quote,
    to_block,
    to_bool,
    to_choice,
    to_float,
    to_int,
)

__all__ = ["Controller", "FirmwareError", "Reply", "State"]

MANUFACTURER = "OpenOPU"
MODEL = "OPU-1140-SIM"
FIRMWARE_VERSION = "1.0.0"
#: entries the error queue holds; one more error replaces the last entry by -350
ERROR_QUEUE_SIZE = 32
#: SIM:FAULt SATurate multiplies the light of the next acquisition by this factor
SATURATE_FACTOR = 1000.0
#: largest SIM:IDLE, seconds (about 31 years)
MAX_IDLE_S = 1e9
#: largest SIM:FAULt DELay, milliseconds
MAX_DELAY_MS = 600_000

SETTING_KEYS = (
    "n_features",
    "exposure_us",
    "frame_time_us",
    "bit_depth",
    "analog_gain_db",
    "camera_roi",
    "input_roi",
    "macro_pixel_mirrors",
)
_CAMERA_ROI_KEYS = ("row", "col", "height_px", "width_px")
_INPUT_ROI_KEYS = ("row", "col", "height_mirrors", "width_mirrors")
_DEFAULT_N_FEATURES = 1024

FAULT_KINDS = {
    "DROP": "DROP",
    "DEL": "DELAY", "DELAY": "DELAY",
    "TRUN": "TRUNCATE", "TRUNCATE": "TRUNCATE",
    "CORR": "CORRUPT", "CORRUPT": "CORRUPT",
    "ERR": "ERROR", "ERROR": "ERROR",
    "SAT": "SATURATE", "SATURATE": "SATURATE",
    "CLE": "CLEAR", "CLEAR": "CLEAR",
}


class State(StrEnum):
    """Acquisition state (``ACQ:STAT?``)."""

    IDLE = "IDLE"
    CONFIGURED = "CONFIGURED"
    ARMED = "ARMED"
    ACQUIRING = "ACQUIRING"
    READY = "READY"
    ERROR = "ERROR"


@dataclass(frozen=True)
class Reply:
    """What a transport sends back for one program message.

    ``data``: response bytes with the final ``\\n`` (None: nothing to send); ``delay_s``: wait
    before sending (SIM:FAULt DELay); ``close_after``: close the connection after sending
    ``data`` (SIM:FAULt DROP: ``data`` then stops in the middle of a block).
    """

    data: bytes | None
    delay_s: float = 0.0
    close_after: bool = False


@dataclass(frozen=True)
class _BlockOut:
    payload: bytes | memoryview


def _err(code: int, detail: str) -> FirmwareError:
    return FirmwareError(code, detail)


class Controller:
    """The emulated OPU's firmware. See the module docstring and docs/protocol.md.

    Parameters
    ----------
    config:
        The optical bench (default ``opu.realistic(seed=0)``). Its camera and DMD settings are the
        power-on (and ``*RST``) device settings; ``n_features`` starts at 1024.
    serial:
        Serial number reported by ``*IDN?``.
    pattern_memory:
        Most patterns one uploaded sequence may hold.
    frame_buffer_bytes:
        Capacity of the frame buffer; a sequence whose frames do not fit is refused (205).
    medium:
        Optional :class:`opu.RecoveredMedium`: the bench's transmission matrix is this given matrix
        (a digital twin of a measured device) instead of the one generated from the seed.
    """

    def __init__(
        self,
        config: opu.OPUConfig | None = None,
        *,
        serial: str = "SIM0001",
        pattern_memory: int = 4096,
        frame_buffer_bytes: int = 512 * 2**20,
        medium: opu.RecoveredMedium | None = None,
    ) -> None:
        config = opu.realistic(seed=0) if config is None else config
        if not isinstance(config, opu.OPUConfig):
            raise opu.ConfigError(f"config must be an opu.OPUConfig, got {type(config).__name__}")
        if not (isinstance(pattern_memory, numbers.Integral) and pattern_memory >= 1):
            raise opu.ConfigError(f"pattern_memory must be an integer >= 1, got {pattern_memory!r}")
        if not (isinstance(frame_buffer_bytes, numbers.Integral) and frame_buffer_bytes >= 1):
            raise opu.ConfigError(f"frame_buffer_bytes must be an integer >= 1, got {frame_buffer_bytes!r}")
        if not serial.isprintable() or "," in serial or not serial:
            raise opu.ConfigError(f"serial must be printable text without commas, got {serial!r}")
        try:
            self._power_on_settings(config)
        except FirmwareError as exc:
            raise opu.ConfigError(f"this config cannot run on the device: {exc.message}") from None
        self.identity: tuple[str, str, str, str] = (MANUFACTURER, MODEL, serial, FIRMWARE_VERSION)
        self.pattern_memory = int(pattern_memory)
        self.frame_buffer_bytes = int(frame_buffer_bytes)
        self._lock = threading.RLock()
        self._bench = config
        self._clock = DeviceClock(electrical_power_w=config.electrical_power_w)
        self._sim: opu.Simulator | None = None
        if medium is not None and not isinstance(medium, opu.RecoveredMedium):
            raise opu.ConfigError(f"medium must be an opu.RecoveredMedium, got {type(medium).__name__}")
        self._medium = medium
        self._noise = True
        self._faults: dict[str, Any] = {}
        self._errors: deque[tuple[int, str]] = deque()
        self._esr = 0
        self._settings: dict[str, Any] = {}
        self._txn: dict[str, Any] | None = None
        self._cfg_cache: opu.OPUConfig | None = None
        self._sequence: np.ndarray | None = None
        self._frames: np.ndarray | None = None
        self._acquiring = False
        self._failed = False
        self._configured = False
        self._laser = True
        self._commands = self._command_table()
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
            self._txn = None
            self._settings = self._power_on_settings(self._bench)
            self._cfg_cache = None
            self._sequence = None
            self._frames = None
            self._failed = False
            self._configured = False
            self._laser = True

    def clear_status(self) -> None:
        """``*CLS``: empty the error queue and the event status register; leave the ERROR state."""
        with self._lock:
            self._errors.clear()
            self._esr = 0
            self._failed = False

    # ================================================================== settings
    def get_settings(self) -> dict[str, Any]:
        """The current settings (a fresh dict; ROIs as dicts)."""
        with self._lock:
            return {k: (dict(v) if isinstance(v, dict) else v) for k, v in self._settings.items()}

    def set_setting(self, name: str, value: Any) -> None:
        """Change one setting; range (-222) and consistency (-221) are checked, nothing changes on error."""
        self.set_settings({name: value})

    def set_settings(self, changes: Mapping[str, Any]) -> None:
        """Change several settings atomically: consistency (-221) is checked on the result only."""
        with self._lock:
            self._commit()
            try:
                for name, value in changes.items():
                    self._stage(name, value)
            except FirmwareError:
                self._rollback()
                raise
            self._commit()

    def _stage(self, name: str, value: Any) -> None:
        if name not in SETTING_KEYS:
            raise _err(-113, f"unknown setting {name!r}; settings are {', '.join(SETTING_KEYS)}")
        checked = self._check_value(name, value)
        if self._txn is None:
            self._txn = self.get_settings()
        self._settings[name] = checked

    def _rollback(self) -> None:
        if self._txn is not None:
            self._settings = self._txn
            self._txn = None

    def _commit(self) -> None:
        """Check the staged settings for consistency, then apply their side effects (or roll back)."""
        if self._txn is None:
            return
        old = self._txn
        try:
            self._check_consistent(self._settings)
        except FirmwareError:
            self._rollback()
            raise
        self._txn = None
        if self._settings == old:
            return
        self._configured = True
        self._cfg_cache = None
        self._frames = None  # frames belong to the settings they were taken with
        self._failed = False
        if self._settings["n_features"] != old["n_features"]:
            self._sequence = None  # its rows have the old pattern width

    def _limits(self) -> tuple[int, int, int, int]:
        """(sensor height, sensor width, DMD height, DMD width) of the bench."""
        c, d = self._bench.camera, self._bench.dmd
        return c.sensor_height_px, c.sensor_width_px, d.height_mirrors, d.width_mirrors

    def _check_value(self, name: str, value: Any) -> Any:
        sh, sw, dh, dw = self._limits()
        if name == "n_features":
            return _int_in(value, name, 1, dh * dw)
        if name == "exposure_us":
            return _float_in(value, name, 1.0, 1e6, "us")
        if name == "frame_time_us":
            return _float_in(value, name, 1.0, 1e7, "us")
        if name == "analog_gain_db":
            return _float_in(value, name, 0.0, 24.0, "dB")
        if name == "bit_depth":
            v = _int_in(value, name, 8, 12)
            if v not in (8, 10, 12):
                raise _err(-222, f"bit_depth={v} is not supported; allowed: 8, 10, 12")
            return v
        if name == "macro_pixel_mirrors":
            return _int_in(value, name, 1, min(dh, dw))
        if name == "camera_roi":
            r = _roi(value, name, _CAMERA_ROI_KEYS)
            return _roi_inside(r, name, _CAMERA_ROI_KEYS, sh, sw, "sensor", "px")
        r = _roi(value, name, _INPUT_ROI_KEYS)
        return _roi_inside(r, name, _INPUT_ROI_KEYS, dh, dw, "DMD", "mirrors")

    @staticmethod
    def _check_consistent(s: Mapping[str, Any]) -> None:
        if s["frame_time_us"] < s["exposure_us"]:
            raise _err(-221, f"frame_time_us={s['frame_time_us']!r} must be >= exposure_us="
                       f"{s['exposure_us']!r} (the exposure fits inside the frame time)")
        r, a = s["input_roi"], s["macro_pixel_mirrors"]
        if a > r["height_mirrors"] or a > r["width_mirrors"]:
            raise _err(-221, f"macro_pixel_mirrors={a} does not fit the {r['height_mirrors']}x"
                       f"{r['width_mirrors']}-mirror input ROI")
        cap = (r["height_mirrors"] // a) * (r["width_mirrors"] // a)
        if s["n_features"] > cap:
            raise _err(-221, f"n_features={s['n_features']} does not fit the {r['height_mirrors']}x"
                       f"{r['width_mirrors']}-mirror input ROI with {a}-mirror macro-pixels (max {cap})")

    def _power_on_settings(self, config: opu.OPUConfig) -> dict[str, Any]:
        """Settings taken from a bench config (validated against the device's ranges)."""
        cam, dmd = config.camera, config.dmd
        if cam.bit_depth is None:
            raise _err(-222, "camera.bit_depth=None (ideal float detector) cannot be sent by the "
                       "device; use 8, 10 or 12")
        h, w = dmd.roi_shape_mirrors
        s = {
            "n_features": min(_DEFAULT_N_FEATURES, dmd.max_features),
            "exposure_us": float(cam.exposure_us),
            "frame_time_us": float(cam.frame_time_us),
            "bit_depth": int(cam.bit_depth),
            "analog_gain_db": float(cam.analog_gain_db),
            "camera_roi": {"row": cam.roi.row, "col": cam.roi.col,
                           "height_px": cam.roi.height_px, "width_px": cam.roi.width_px},
            "input_roi": {"row": dmd.roi_row, "col": dmd.roi_col, "height_mirrors": h, "width_mirrors": w},
            "macro_pixel_mirrors": int(dmd.macro_pixel_mirrors),
        }
        for k in ("exposure_us", "frame_time_us", "analog_gain_db"):
            lo, hi = {"exposure_us": (1.0, 1e6), "frame_time_us": (1.0, 1e7),
                      "analog_gain_db": (0.0, 24.0)}[k]
            if not lo <= s[k] <= hi:
                raise _err(-222, f"camera {k}={s[k]!r} is outside the device range [{lo!r}, {hi!r}]")
        return s

    # ================================================================== the optical bench
    @property
    def config(self) -> opu.OPUConfig:
        """The configuration in effect: bench config with the settings (and SIM:NOISe) applied."""
        with self._lock:
            if self._cfg_cache is None:
                self._cfg_cache = self._effective_config()
            return self._cfg_cache

    def _effective_config(self) -> opu.OPUConfig:
        s = self._settings
        cam: dict[str, Any] = {
            "roi": dict(s["camera_roi"]),
            "exposure_us": s["exposure_us"],
            "frame_time_us": s["frame_time_us"],
            "bit_depth": s["bit_depth"],
            "analog_gain_db": s["analog_gain_db"],
        }
        laser: dict[str, Any] = {}
        if not self._noise:
            cam.update(shot_noise=False, read_noise_e=0.0, dark_current_e_per_s=0.0, prnu_rel=0.0,
                       dsnu_e=0.0)
            laser["power_fluctuation_rel"] = 0.0
        r = s["input_roi"]
        dmd = {"roi_row": r["row"], "roi_col": r["col"], "roi_height_mirrors": r["height_mirrors"],
               "roi_width_mirrors": r["width_mirrors"], "macro_pixel_mirrors": s["macro_pixel_mirrors"]}
        return self._bench.replace(camera=cam, dmd=dmd, laser=laser)

    def _simulator(self, config: opu.OPUConfig) -> opu.Simulator:
        """The Simulator for ``config`` and the current n_features, keeping optics where possible."""
        n = self._settings["n_features"]
        sim = self._sim
        if sim is None or sim.n_features != n:
            sim = opu.Simulator(config, n, medium=self._medium)
            sim.clock = self._clock
            self._sync_medium(sim)
        elif sim.config != config:
            tm = sim.tm
            sim.reconfigure(config)
            sim.clock = self._clock
            if sim.tm is not tm:
                self._sync_medium(sim)
        self._sim = sim
        return sim

    def _sync_medium(self, sim: opu.Simulator) -> None:
        """A rebuilt medium starts at drift step 0: bring it to the device time in one jump."""
        med = sim.medium
        if med.tau_s:
            target = med.step_at(self._clock.device_time_s)
            if target > med.step:
                med.advance_to_step(target, exact_steps=False)

    def _power_cycle_optics(self) -> None:
        """A new simulated unit: clock and frame counter to zero, medium rebuilt, frames dropped."""
        self._clock = DeviceClock(electrical_power_w=self._bench.electrical_power_w)
        self._sim = None
        self._cfg_cache = None
        self._frames = None
        self._failed = False

    # ================================================================== pattern sequence
    @property
    def bytes_per_pattern(self) -> int:
        return (self._settings["n_features"] + 7) // 8

    @property
    def sequence_length(self) -> int:
        with self._lock:
            return 0 if self._sequence is None else int(self._sequence.shape[0])

    def upload_patterns(self, packed: np.ndarray) -> None:
        """Replace the sequence with bit-packed patterns uint8 (b, ceil(n/8)), MSB first."""
        with self._lock:
            self._commit()
            p = packed
            if not isinstance(p, np.ndarray) or p.dtype != np.uint8 or p.ndim != 2:
                desc = f"{p.dtype} {p.shape}" if isinstance(p, np.ndarray) else type(p).__name__
                raise _err(-160, f"patterns must be a uint8 array (b, {self.bytes_per_pattern}), got {desc}")
            bpp = self.bytes_per_pattern
            n = self._settings["n_features"]
            if p.shape[1] != bpp:
                raise _err(-160, f"{n} features need {bpp} bytes per pattern, got {p.shape[1]}")
            self._store_sequence(np.array(p, dtype=np.uint8, order="C", copy=True), n)

    def _store_sequence(self, p: np.ndarray, n: int) -> None:
        b = p.shape[0]
        if b < 1:
            raise _err(-222, "a sequence needs at least 1 pattern")
        if b > self.pattern_memory:
            raise _err(201, f"{b} patterns exceed the pattern memory of {self.pattern_memory}")
        pad = (-n) % 8
        if pad and np.any(p[:, -1] & np.uint8((1 << pad) - 1)):
            raise _err(-161, f"non-zero padding bits after feature {n} (the last {pad} bits of each "
                       "pattern must be 0): corrupted pattern data")
        self._sequence = p
        self._frames = None
        self._failed = False

    def clear_sequence(self) -> None:
        """``SEQ:CLE``: forget the sequence and any frames."""
        with self._lock:
            self._commit()
            self._sequence = None
            self._frames = None
            self._failed = False

    # ================================================================== acquisition
    def _fail(self, code: int, detail: str) -> FirmwareError:
        self._failed = True
        self._frames = None
        return _err(code, detail)

    def start_acquisition(self) -> None:
        """``ACQ:STAR``: acquire the uploaded sequence (one frame per pattern) into the frame buffer.

        Advances the frame counter and device time by b frames x frame time. Frames with pixels
        at the ADC maximum put a 210 warning on the error queue (also through this Python API).
        """
        with self._lock:
            self._commit()
            if self._sequence is None:
                raise self._fail(202, "upload a pattern sequence (SEQ:DATA) before ACQ:STAR")
            if not self._laser:
                raise self._fail(203, "the laser is off; turn it on with LAS:STAT ON")
            s = self._settings
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
                saturate = self._faults.pop("SATURATE", None) is not None
                if saturate:
                    lit = config.laser.photons_per_mirror_us * SATURATE_FACTOR
                    config = config.replace(laser={"photons_per_mirror_us": lit})
                sim = self._simulator(config)
                patterns = opu.unpack_patterns(self._sequence, s["n_features"])
                frames = sim.acquire(patterns)
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
                self._push(210, f"{ERROR_TEXT[210]}; {sat} of {self._frames.size} pixels at the ADC "
                           f"maximum {adc_max} DN (lower the exposure or gain)")

    @property
    def frames_ready(self) -> int:
        with self._lock:
            return 0 if self._frames is None else int(self._frames.shape[0])

    def fetch_frames(self, start: int = 0, count: int | None = None) -> np.ndarray:
        """Frames ``[start, start + count)`` of the buffer: (count, m) uint8 or little-endian uint16."""
        with self._lock:
            return np.array(self._frame_view(start, count), copy=True)

    def _frame_view(self, start: int, count: int | None) -> np.ndarray:
        self._commit()
        if self._frames is None:
            raise _err(204, f"no frames ready (state {self.state.value}); run ACQ:STAR first")
        total = self._frames.shape[0]
        start = _int_in(start, "start", 0, total - 1)
        count = total - start if count is None else _int_in(count, "count", 1, total - start)
        return self._frames[start : start + count]

    # ================================================================== status, errors
    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "laser_on": self._laser,
                "temperature_c": self.temperature_c,
                "frames_total": int(self._clock.frames),
                "device_time_s": float(self._clock.device_time_s),
                "state": self.state.value,
            }

    @property
    def temperature_c(self) -> float:
        """Sensor temperature, degC: warms from 24 to 32 degC over the first hour, slow 0.15 degC ripple."""
        t = self._clock.device_time_s
        return round(24.0 + 8.0 * (1.0 - math.exp(-t / 1800.0)) + 0.15 * math.sin(2 * math.pi * t / 900.0), 3)

    @property
    def laser_on(self) -> bool:
        return self._laser

    def set_laser(self, on: bool) -> None:
        with self._lock:
            self._laser = bool(on)

    def next_error(self) -> tuple[int, str]:
        """Oldest error-queue entry, removed: (code, message); (0, "No error") when empty."""
        with self._lock:
            return self._errors.popleft() if self._errors else (0, "No error")

    @property
    def error_count(self) -> int:
        return len(self._errors)

    def push_error(self, code: int, message: str) -> None:
        """Put an error on the queue (transports use it for framing errors)."""
        with self._lock:
            self._push(code, message)

    def _push(self, code: int, message: str) -> None:
        if len(self._errors) >= ERROR_QUEUE_SIZE:
            self._errors[-1] = (-350, ERROR_TEXT[-350])
        else:
            self._errors.append((int(code), message))
        # event status register: command / execution / device-dependent / query error bits
        if -199 <= code <= -100:
            self._esr |= 32
        elif -299 <= code <= -200:
            self._esr |= 16
        elif -499 <= code <= -400:
            self._esr |= 4
        else:
            self._esr |= 8

    # ================================================================== SIM: subsystem
    @property
    def seed(self) -> int:
        return self._bench.seed

    def set_seed(self, seed: int) -> None:
        """Re-seed the bench: a new simulated unit (clock, frame counter and medium start afresh).

        Settings and the uploaded sequence are kept; frames in the buffer are dropped.
        """
        with self._lock:
            self._commit()
            v = _int_in(seed, "seed", 0, 2**32 - 1)
            self._bench = self._bench.replace(seed=v)
            self._power_cycle_optics()

    @property
    def noise(self) -> bool:
        return self._noise

    def set_noise(self, on: bool) -> None:
        """Noise off: ideal camera noise figures (no shot/read/dark/PRNU/DSNU/laser fluctuation), same ADC."""
        with self._lock:
            self._noise = bool(on)
            self._cfg_cache = None
            self._frames = None

    def idle(self, seconds: float) -> None:
        """Let ``seconds`` of device time pass with no frames; the medium drifts."""
        with self._lock:
            self._commit()
            s = _float_in(seconds, "idle time", 0.0, MAX_IDLE_S, "s")
            if self._sim is not None:
                self._sim.idle(s)
            else:
                self._clock.idle(s)

    def set_clock(self, frames: int, device_time_s: float) -> None:
        """Move the simulated unit's clock forward to (``frames``, ``device_time_s``) (SIM:CLOCk).

        Resumes an interrupted run exactly: frame noise is keyed by the global frame counter, and
        the medium is advanced one drift step at a time, as the frames of the original run did.
        The clock never goes back (-222).
        """
        with self._lock:
            self._commit()
            f = _int_in(frames, "frame counter", self._clock.frames, 2**62)
            t = _float_in(device_time_s, "device time", self._clock.device_time_s, 1e12, "s")
            sim = self._simulator(self.config)  # built now so that the drift steps one at a time
            sim.set_clock(f, t)

    def load_config(self, config: opu.OPUConfig) -> None:
        """Replace the bench (e.g. a fitted digital twin): its camera/DMD values become the settings.

        ``n_features`` is kept (it must fit the new input ROI, else -221). Like SIM:SEED this
        starts a new simulated unit (clock and frame counter from zero); the sequence is kept.
        """
        with self._lock:
            self._commit()
            if not isinstance(config, opu.OPUConfig):
                raise _err(-104, f"config must be an opu.OPUConfig, got {type(config).__name__}")
            new = self._power_on_settings(config)
            new["n_features"] = self._settings["n_features"]
            old_bench = self._bench
            self._bench = config
            try:
                for k in SETTING_KEYS:
                    new[k] = self._check_value(k, new[k])
                self._check_consistent(new)
            except FirmwareError:
                self._bench = old_bench
                raise
            self._settings = new
            self._configured = True
            self._power_cycle_optics()

    def inject_fault(self, kind: str, arg: float | int | None = None) -> None:
        """Arm a fault (SIM:FAULt): DROP, DELAY ms, TRUNCATE, CORRUPT, ERROR code, SATURATE, CLEAR.

        DROP/TRUNCATE/CORRUPT hit the next response that carries a block, DELAY the next
        response; they act in the transport (:meth:`process`), so a direct Python caller only sees
        SATURATE (next acquisition) and ERROR (pushed now).
        """
        with self._lock:
            if not isinstance(kind, str) or kind.upper() not in FAULT_KINDS:
                raise _err(-224, f"fault kind must be one of {', '.join(sorted(set(FAULT_KINDS.values())))}, "
                           f"got {kind!r}")
            k = FAULT_KINDS[kind.upper()]
            if k == "CLEAR":
                self._faults.clear()
            elif k == "DELAY":
                if arg is None:
                    raise _err(-109, "SIM:FAUL DEL needs the delay in ms")
                self._faults[k] = _float_in(arg, "delay", 0.0, MAX_DELAY_MS, "ms") / 1e3
            elif k == "ERROR":
                if arg is None:
                    raise _err(-109, "SIM:FAUL ERR needs an error code")
                code = _int_in(arg, "error code", -32768, 32767)
                if code == 0:
                    raise _err(-222, "error code 0 means 'no error'; inject a non-zero code")
                self._push(code, f"{ERROR_TEXT.get(code, 'Device error')}; injected by SIM:FAULt")
            else:
                if arg is not None:
                    raise _err(-108, f"SIM:FAUL {k} takes no argument")
                self._faults[k] = True

    @property
    def pending_faults(self) -> dict[str, Any]:
        return dict(self._faults)

    def max_input_block_bytes(self) -> int:
        """Largest block payload a transport should accept (pattern memory at the largest n, capped)."""
        _, _, dh, dw = self._limits()
        return min(MAX_BLOCK_BYTES, max(self.pattern_memory * ((dh * dw + 7) // 8), 16 * 2**20))

    # ================================================================== program messages
    def handle(self, request: bytes) -> bytes | None:
        """Execute one program message; return the response (with ``\\n``) or None. Never raises."""
        return self.process(request).data

    def process(self, request: bytes | bytearray | memoryview) -> Reply:
        """Like :meth:`handle`, plus the transport-level faults (delay, drop) for the server."""
        with self._lock:
            parts: list[Any] = []
            answered = False
            try:
                for cmd in parse_message(request):
                    handler, is_setting = self._lookup(cmd)
                    if not is_setting:
                        self._commit()
                    if cmd.query:
                        answered = True
                        parts.append(b"")  # stays empty if the query fails
                        out = handler(cmd)
                        parts[-1] = out
                    else:
                        handler(cmd)
                self._commit()
            except (ScpiError, FirmwareError) as exc:
                self._push(exc.code, exc.message)
                self._settle()
                answered = answered or mentions_query(request)
            except Exception as exc:  # a bug must not kill the device: report it as -200
                self._push(-200, f"{ERROR_TEXT[-200]}; internal error {type(exc).__name__}: {exc}")
                self._settle()
                answered = answered or mentions_query(request)
            if not answered:
                return Reply(None)
            return self._assemble(parts)

    def _settle(self) -> None:
        """After an error mid-message: settings staged so far take effect if consistent."""
        try:
            self._commit()
        except FirmwareError as exc:
            self._push(exc.code, exc.message)

    def _assemble(self, parts: list[Any]) -> Reply:
        chunks: list[bytes | memoryview] = []
        block_at: tuple[int, int, int] | None = None  # (chunk index of header, header len, payload len)
        for i, p in enumerate(parts):
            if i:
                chunks.append(b";")
            if isinstance(p, _BlockOut):
                hdr = block_header(len(p.payload))
                if block_at is None:
                    block_at = (len(chunks), len(hdr), len(p.payload))
                chunks.append(hdr)
                chunks.append(p.payload)
            else:
                chunks.append(p)
        chunks.append(b"\n")
        delay = self._faults.pop("DELAY", 0.0)
        if block_at is not None:
            idx, hlen, plen = block_at
            if self._faults.pop("TRUNCATE", None):
                hdr = bytes(chunks[idx])
                return Reply(b"".join([*chunks[:idx], hdr[: 2 + (hlen - 2) // 2], b"\n"]), delay)
            if self._faults.pop("CORRUPT", None):
                chunks[idx] = b"#X" + bytes(chunks[idx])[2:]
            if self._faults.pop("DROP", None):
                head = b"".join(chunks[: idx + 1])
                return Reply(b"".join([head, chunks[idx + 1][: plen // 2]]), delay, close_after=True)
        return Reply(b"".join(chunks), delay)

    def _lookup(self, cmd: Command) -> tuple[Callable[[Command], Any], bool]:
        for pattern, query, handler, is_setting in self._commands:
            if query == cmd.query and pattern.matches(cmd.nodes):
                return handler, is_setting
        for pattern, query, _, _ in self._commands:
            if pattern.matches(cmd.nodes):
                form = "a query only" if query else "a command only (no '?' form)"
                raise ScpiError(-113, f"Undefined header; {cmd.header} is {form}")
        raise ScpiError(-113, f"Undefined header; {cmd.header[:60]!r} is not a command of this device")

    def _command_table(self) -> list[tuple[HeaderPattern, bool, Callable[[Command], Any], bool]]:
        S, Q = False, True
        table: list[tuple[str, bool, Callable[[Command], Any], bool]] = [
            ("*IDN", Q, _nullary(lambda: ",".join(self.identity).encode()), False),
            ("*RST", S, _nullary(lambda: self.reset()), False),
            ("*CLS", S, _nullary(lambda: self.clear_status()), False),
            ("*OPC", Q, _nullary(lambda: b"1"), False),
            ("*OPC", S, _nullary(lambda: self._set_opc()), False),
            ("*WAI", S, _nullary(lambda: None), False),
            ("*ESR", Q, self._q_esr, False),
            ("*STB", Q, _nullary(lambda: str(self._stb()).encode()), False),
            ("*TST", Q, _nullary(lambda: b"0"), False),
            ("SYSTem:ERRor[:NEXT]", Q, self._q_error, False),
            ("SYSTem:ERRor:COUNt", Q, _nullary(lambda: str(len(self._errors)).encode()), False),
            ("SYSTem:VERSion", Q, _nullary(lambda: b"1999.0"), False),
            ("CAMera:EXPosure", S, self._setter("exposure_us", _arg_float), True),
            ("CAMera:EXPosure", Q, self._getter("exposure_us"), True),
            ("CAMera:FTIMe", S, self._setter("frame_time_us", _arg_float), True),
            ("CAMera:FTIMe", Q, self._getter("frame_time_us"), True),
            ("CAMera:GAIN", S, self._setter("analog_gain_db", _arg_float), True),
            ("CAMera:GAIN", Q, self._getter("analog_gain_db"), True),
            ("CAMera:BITS", S, self._setter("bit_depth", _arg_int), True),
            ("CAMera:BITS", Q, self._getter("bit_depth"), True),
            ("CAMera:ROI", S, self._setter("camera_roi", _arg_roi(_CAMERA_ROI_KEYS)), True),
            ("CAMera:ROI", Q, self._getter("camera_roi"), True),
            ("CAMera:SIZE", Q, _nullary(lambda: f"{self._limits()[0]},{self._limits()[1]}".encode()),
             False),
            ("DMD:FEATures", S, self._setter("n_features", _arg_int), True),
            ("DMD:FEATures", Q, self._getter("n_features"), True),
            ("DMD:ROI", S, self._setter("input_roi", _arg_roi(_INPUT_ROI_KEYS)), True),
            ("DMD:ROI", Q, self._getter("input_roi"), True),
            ("DMD:MACRopixel", S, self._setter("macro_pixel_mirrors", _arg_int), True),
            ("DMD:MACRopixel", Q, self._getter("macro_pixel_mirrors"), True),
            ("DMD:SIZE", Q, _nullary(lambda: f"{self._limits()[2]},{self._limits()[3]}".encode()), False),
            ("SEQuence:DATA", S, self._c_seq_data, False),
            ("SEQuence:DATA", Q, _nullary(lambda: _BlockOut(self._seq_bytes())), False),
            ("SEQuence:COUNt", Q, _nullary(lambda: str(self.sequence_length).encode()), False),
            ("SEQuence:CLEar", S, _nullary(lambda: self.clear_sequence()), False),
            ("SEQuence:MAXimum", Q, _nullary(lambda: str(self.pattern_memory).encode()), False),
            ("ACQuire:STARt", S, _nullary(lambda: self.start_acquisition()), False),
            ("ACQuire:STATe", Q, _nullary(lambda: self.state.value.encode()), False),
            ("FETCh:FRAMes", Q, self._q_frames, False),
            ("FETCh:COUNt", Q, _nullary(lambda: str(self.frames_ready).encode()), False),
            ("STATus:LASer", Q, _nullary(lambda: b"1" if self._laser else b"0"), False),
            ("LASer:STATe", S, lambda c: self.set_laser(_one(c, to_bool, "laser state")), False),
            ("LASer:STATe", Q, _nullary(lambda: b"1" if self._laser else b"0"), False),
            ("STATus:TEMPerature", Q, _nullary(lambda: format_float(self.temperature_c).encode()), False),
            ("STATus:FRAMes", Q, _nullary(lambda: str(self._clock.frames).encode()), False),
            ("STATus:TIME", Q, _nullary(lambda: format_float(self._clock.device_time_s).encode()), False),
            ("SIM:SEED", S, lambda c: self.set_seed(_one(c, to_int, "seed")), False),
            ("SIM:SEED", Q, _nullary(lambda: str(self.seed).encode()), False),
            ("SIM:NOISe", S, lambda c: self.set_noise(_one(c, to_bool, "noise")), False),
            ("SIM:NOISe", Q, _nullary(lambda: b"1" if self._noise else b"0"), False),
            ("SIM:IDLE", S, lambda c: self.idle(_one(c, to_float, "idle time")), False),
            ("SIM:CLOCk", S, self._c_clock, False),
            ("SIM:CLOCk", Q, _nullary(lambda: f"{self._clock.frames},"
                                      f"{format_float(self._clock.device_time_s)}".encode()), False),
            ("SIM:CONFig", S, self._c_config, False),
            ("SIM:CONFig", Q, _nullary(lambda: _BlockOut(self.config.model_dump_json().encode())), False),
            ("SIM:FAULt", S, self._c_fault, False),
            ("SIM:FAULt", Q, self._q_fault, False),
        ]
        return [(HeaderPattern(h), q, fn, st) for h, q, fn, st in table]

    # ------------------------------------------------------------------ command handlers
    def _setter(self, name: str, conv: Callable[[Command, str], Any]) -> Callable[[Command], None]:
        def run(cmd: Command) -> None:
            self._stage(name, conv(cmd, name))

        return run

    def _getter(self, name: str) -> Callable[[Command], bytes]:
        def run(cmd: Command) -> bytes:
            expect_args(cmd, 0)
            return _format_setting(self._settings[name])

        return run

    def _set_opc(self) -> None:
        self._esr |= 1

    def _q_esr(self, cmd: Command) -> bytes:
        expect_args(cmd, 0)
        v, self._esr = self._esr, 0
        return str(v).encode()

    def _stb(self) -> int:
        return (4 if self._errors else 0) | (32 if self._esr else 0)

    def _q_error(self, cmd: Command) -> bytes:
        expect_args(cmd, 0)
        code, message = self.next_error()
        return f"{code},{quote(message)}".encode()

    def _c_seq_data(self, cmd: Command) -> None:
        expect_args(cmd, 1)
        data = to_block(cmd.args[0], "SEQ:DATA")
        bpp = self.bytes_per_pattern
        if len(data) % bpp:
            raise _err(-160, f"block of {len(data)} bytes is not a whole number of patterns of "
                       f"{bpp} bytes (n_features={self._settings['n_features']}, ceil(n/8) bytes each)")
        b = len(data) // bpp
        if b > self.pattern_memory:
            raise _err(201, f"{b} patterns exceed the pattern memory of {self.pattern_memory}")
        p = np.frombuffer(data, dtype=np.uint8).reshape(b, bpp).copy()
        self._store_sequence(p, self._settings["n_features"])

    def _seq_bytes(self) -> bytes:
        if self._sequence is None:
            raise _err(202, "no sequence uploaded")
        return self._sequence.tobytes()

    def _q_frames(self, cmd: Command) -> _BlockOut:
        expect_args(cmd, 0, 2)
        if len(cmd.args) == 1:
            raise ScpiError(-109, "Missing parameter; FETC:FRAM? takes no parameter or <start>,<count>")
        start, count = (0, None) if not cmd.args else (to_int(cmd.args[0], "start"),
                                                         to_int(cmd.args[1], "count"))
        view = self._frame_view(start, count)
        return _BlockOut(memoryview(view).cast("B"))

    def _c_config(self, cmd: Command) -> None:
        expect_args(cmd, 1)
        data = to_block(cmd.args[0], "SIM:CONF")
        try:
            cfg = opu.OPUConfig.model_validate_json(bytes(data))
        except pydantic.ValidationError as exc:
            errs = exc.errors()
            first = errs[0]
            loc = ".".join(str(x) for x in first.get("loc", ())) or "config"
            more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
            raise _err(-222, f"invalid OPUConfig JSON: {loc}: {first.get('msg', '')}{more}"[:300]) from None
        self.load_config(cfg)

    def _c_clock(self, cmd: Command) -> None:
        expect_args(cmd, 2)
        self.set_clock(to_int(cmd.args[0], "frame counter"), to_float(cmd.args[1], "device time"))

    def _c_fault(self, cmd: Command) -> None:
        expect_args(cmd, 1, 2)
        kind = to_choice(cmd.args[0], "fault kind", FAULT_KINDS)
        arg: float | int | None = None
        if len(cmd.args) == 2:
            arg = to_int(cmd.args[1], "error code") if kind == "ERROR" else to_float(cmd.args[1], "argument")
        self.inject_fault(kind, arg)

    def _q_fault(self, cmd: Command) -> bytes:
        expect_args(cmd, 0)
        return (",".join(sorted(self._faults)) or "NONE").encode()


# ---------------------------------------------------------------------------- helpers
def _nullary(fn: Callable[[], Any]) -> Callable[[Command], Any]:
    """Handler of a parameterless command: refuse parameters (-108) before doing anything."""

    def run(cmd: Command) -> Any:
        if cmd.args:
            raise ScpiError(-108, f"Parameter not allowed; {cmd.header} takes no parameter")
        return fn()

    return run


def _one(cmd: Command, conv: Callable[[Any, str], Any], what: str) -> Any:
    expect_args(cmd, 1)
    return conv(cmd.args[0], what)


def _arg_float(cmd: Command, what: str) -> float:
    return _one(cmd, to_float, what)


def _arg_int(cmd: Command, what: str) -> int:
    return _one(cmd, to_int, what)


def _arg_roi(keys: tuple[str, ...]) -> Callable[[Command, str], dict[str, int]]:
    def conv(cmd: Command, what: str) -> dict[str, int]:
        expect_args(cmd, 4)
        return {k: to_int(a, f"{what}.{k}") for k, a in zip(keys, cmd.args, strict=True)}

    return conv


def _format_setting(v: Any) -> bytes:
    if isinstance(v, dict):
        return ",".join(str(x) for x in v.values()).encode()
    if isinstance(v, float):
        return format_float(v).encode()
    return str(v).encode()


def _int_in(value: Any, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise _err(-104, f"{what} must be an integer, got {value!r}")
    v = int(value)
    if not lo <= v <= hi:
        raise _err(-222, f"{what}={v} is out of range; allowed {lo}..{hi}")
    return v


def _float_in(value: Any, what: str, lo: float, hi: float, unit: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _err(-104, f"{what} must be a number ({unit}), got {value!r}")
    v = float(value)
    if not (math.isfinite(v) and lo <= v <= hi):
        raise _err(-222, f"{what}={v!r} {unit} is out of range; allowed {lo!r}..{hi!r} {unit}")
    return v


def _roi(value: Any, what: str, keys: tuple[str, ...]) -> dict[str, int]:
    if hasattr(value, "model_dump"):
        value = value.model_dump()
    if isinstance(value, Mapping):
        if set(value) != set(keys):
            raise _err(-104, f"{what} must have exactly the keys {', '.join(keys)}, got {sorted(value)}")
        items = [value[k] for k in keys]
    elif isinstance(value, list | tuple) and len(value) == 4:
        items = list(value)
    else:
        raise _err(-104, f"{what} must be a mapping ({', '.join(keys)}) or 4 integers, got {value!r}")
    out = {}
    for k, v in zip(keys, items, strict=True):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise _err(-104, f"{what}.{k} must be an integer, got {v!r}")
        out[k] = int(v)
    return out


def _roi_inside(r: dict[str, int], what: str, keys: tuple[str, ...], height: int, width: int,
                device: str, unit: str) -> dict[str, int]:
    row, col, h, w = (r[k] for k in keys)
    if row < 0 or col < 0 or h < 1 or w < 1 or row + h > height or col + w > width:
        raise _err(-222, f"{what} (row={row}, col={col}, height={h}, width={w}) must lie inside the "
                   f"{height}x{width}-{unit} {device} with height, width >= 1")
    return r

