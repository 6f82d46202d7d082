"""The one ``Device`` interface every host application uses, whatever is behind it.

A concrete device (in-process simulator, VISA instrument) implements a handful of primitives
(``_open``, ``_close``, ``_query_identity``, ``_read_settings``, ``_write_settings``,
``_run_sequence``, ``_query_status``, ``_wait``); everything a user calls - validation, batching
beyond the pattern memory, the progress bar, counters, linear projections - lives here once, so the
two paths cannot drift apart.

    >>> import drivers                                          # doctest: +SKIP
    >>> with drivers.connect("sim") as dev:                     # doctest: +SKIP
    ...     dev.configure(n_features=64, exposure_us=200)
    ...     frames = dev.acquire(patterns)        # (b, 64) 0/1 -> (b, m) uint8
    ...     y = dev.linear_transform(errors)      # (b, n) real or ternary -> (b, m) float64
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel

import opu
from firmware_models.protocol import FAULT_BY_NAME, FAULT_WORDS
from opu.config import DMD_MAX_HEIGHT_MIRRORS, DMD_MAX_WIDTH_MIRRORS
from opu.dmd import as_pattern_batch, pack_patterns

from .errors import DriverError
from .settings import CameraRoi, DeviceSettings, InputRoi, settings_changes

#: acquisitions of more frames than this show a progress bar (unless ``progress=False``)
PROGRESS_MIN_FRAMES = 2000


@dataclass(frozen=True)
class DeviceIdentity:
    """``*IDN?`` fields."""

    manufacturer: str
    model: str
    serial: str
    firmware: str

    @property
    def is_simulated(self) -> bool:
        """True for the emulator and the in-process simulator (model name ends with ``-SIM``)."""
        return self.model.upper().endswith("-SIM")


@dataclass(frozen=True)
class DeviceStatus:
    """Device-side status and counters."""

    laser_on: bool
    temperature_c: float
    frames_total: int
    device_time_s: float


class Device(ABC):
    """An OPU as the host sees it. Use :func:`drivers.connect` to get one.

    Parameters
    ----------
    resource:
        The URI or VISA resource string (appears in every error).
    """

    def __init__(self, resource: str) -> None:
        self.resource = resource
        self._is_open = False
        self._settings: DeviceSettings | None = None
        self._projectors: dict[tuple[Any, ...], opu.LinearProjector] = {}
        #: frames this host object acquired, and the device time they took (s)
        self.frames_acquired = 0
        self.device_time_s = 0.0
        #: host wall time spent in acquisitions (s)
        self.host_time_s = 0.0

    # ------------------------------------------------------------------ primitives
    @abstractmethod
    def _open(self) -> None: ...

    @abstractmethod
    def _close(self) -> None: ...

    @abstractmethod
    def _query_identity(self) -> DeviceIdentity: ...

    @abstractmethod
    def _read_settings(self) -> DeviceSettings: ...

    @abstractmethod
    def _write_settings(self, settings: DeviceSettings) -> None:
        """Send every field that differs from the device's current settings."""

    @abstractmethod
    def _pattern_memory(self) -> int:
        """Most patterns one sequence may hold."""

    @abstractmethod
    def _run_sequence(self, packed: np.ndarray) -> np.ndarray:
        """Upload bit-packed patterns (b, ceil(n/8)) uint8, acquire, fetch frames (b, m)."""

    @abstractmethod
    def _query_status(self) -> DeviceStatus: ...

    @abstractmethod
    def _wait(self, seconds: float) -> None:
        """Let ``seconds`` of device time pass (sleep on hardware, simulated idle on a simulator)."""

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> Device:
        """Connect (idempotent). Returns self."""
        if not self._is_open:
            self._open()
            self._is_open = True
            self._settings = self._read_settings()
        return self

    def close(self) -> None:
        """Disconnect (idempotent); the device is left as it is."""
        if self._is_open:
            self._is_open = False
            self._projectors.clear()
            self._close()

    @property
    def is_open(self) -> bool:
        return self._is_open

    def __enter__(self) -> Device:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _require_open(self) -> None:
        if not self._is_open:
            raise DriverError(
                "the device is not open: call open() or use it as a context manager", resource=self.resource
            )

    # ------------------------------------------------------------------ identity, settings
    @property
    def identity(self) -> DeviceIdentity:
        self._require_open()
        return self._query_identity()

    @property
    def settings(self) -> DeviceSettings:
        """Current settings (cached; the device is the source of truth after each configure)."""
        self._require_open()
        assert self._settings is not None
        return self._settings

    def configure(self, settings: DeviceSettings | None = None, **changes: Any) -> DeviceSettings:
        """Validate and apply settings: a whole :class:`DeviceSettings` and/or field changes.

        ``dev.configure(exposure_us=200, camera_roi={"row": 0, "col": 0, "height_px": 32,
        "width_px": 32})``. Invalid values raise ``pydantic.ValidationError`` before anything
        is sent. Returns the settings the device reports afterwards.
        """
        self._require_open()
        base = settings if settings is not None else self.settings
        new = DeviceSettings.model_validate({**base.model_dump(), **_dump(changes)})
        self._projectors.clear()  # calibrations depend on the settings
        try:
            self._write_settings(new)
        finally:
            if self._is_open:  # the device is the source of truth, also after a refusal
                self._settings = self._read_settings()
        return self._settings

    @property
    def n_features(self) -> int:
        return self.settings.n_features

    @property
    def n_outputs(self) -> int:
        return self.settings.n_outputs

    @property
    def pattern_memory(self) -> int:
        self._require_open()
        return self._pattern_memory()

    def status(self) -> DeviceStatus:
        self._require_open()
        return self._query_status()

    def wait(self, seconds: float) -> None:
        """Let ``seconds`` of device time pass without frames (the medium keeps drifting)."""
        self._require_open()
        if not np.isfinite(seconds) or seconds < 0:
            raise DriverError(
                f"wait time must be a finite number of seconds >= 0, got {seconds!r}", resource=self.resource
            )
        self._wait(float(seconds))

    # ------------------------------------------------------------------ acquisition
    def acquire(self, patterns: object, progress: bool | None = None) -> np.ndarray:
        """Camera frames for binary patterns: (b, n) or (n,) 0/1 -> (b, m) or (m,) uint8/uint16.

        Batches larger than the device's pattern memory are acquired in several sequences; a
        progress bar is shown above :data:`PROGRESS_MIN_FRAMES` frames (``progress`` forces it on
        or off). On any failure the error propagates and no partial array is returned.
        """
        self._require_open()
        x, single = as_pattern_batch(patterns, self.n_features)
        b = x.shape[0]
        out = np.empty((b, self.n_outputs), dtype=self.settings.frame_dtype)
        chunk = max(1, self.pattern_memory)
        show = (b >= PROGRESS_MIN_FRAMES) if progress is None else progress
        bar = _progress_bar(b, show, self.resource)
        started = time.perf_counter()
        try:
            for lo in range(0, b, chunk):
                hi = min(lo + chunk, b)
                frames = self._run_sequence(pack_patterns(x[lo:hi]))
                if frames.shape != (hi - lo, self.n_outputs):
                    raise DriverError(
                        f"device returned frames of shape {frames.shape}, expected "
                        f"{(hi - lo, self.n_outputs)}",
                        resource=self.resource,
                    )
                out[lo:hi] = frames
                bar.update(hi - lo)
        finally:
            bar.close()
        self.frames_acquired += b
        self.device_time_s += b * self.settings.frame_time_us * 1e-6
        self.host_time_s += time.perf_counter() - started
        return out[0] if single else out

    def transform(self, x: object) -> np.ndarray:
        """The optical transform |B x|^2 of binary x as measured: frames (b, m) (alias of acquire)."""
        return self.acquire(x)

    def _acquire_for_projection(self, patterns: np.ndarray) -> np.ndarray:
        return self.acquire(patterns, progress=None)

    def projector(
        self, n_features: int, scheme: str = "anchor", precision: int = 8, **scheme_options: Any
    ) -> opu.LinearProjector:
        """The (cached) linear projector for ``n_features`` data features with ``scheme``.

        Sets the device's ``n_features`` to what the scheme needs (data + anchor features) if it
        differs: features are laid out in a fixed raster order, so the data features keep their
        mirrors and hence their columns of B.
        """
        key = (n_features, scheme, precision, tuple(sorted(scheme_options.items())))
        proj = self._projectors.get(key)
        if proj is None:
            sch = opu.make_scheme(scheme, n_features, adc_max_dn=self.settings.adc_max_dn, **scheme_options)
            if self.n_features != sch.device_features:
                self.configure(n_features=sch.device_features)
            proj = opu.LinearProjector(self._acquire_for_projection, sch, precision)
            self._projectors[key] = proj
        return proj

    def linear_transform(
        self,
        x: object,
        scheme: str = "anchor",
        precision: int = 8,
        share_repeats: bool = False,
        dtype: Any = np.float64,
        **scheme_options: Any,
    ) -> np.ndarray:
        """A x with A real i.i.d. N(0, 1) (m x n), from intensity frames (opu.linear): (b, m) or
        (m,) float64, or float32 with ``dtype=np.float32`` (half the host memory traffic).

        ``x`` (b, n) or (n,) real: ternary values {-1, 0, 1} cost 4 frames per vector, other
        reals are bit-plane encoded (4 x ``precision`` frames per vector). The first call for a
        given (n, scheme) measures the scheme's calibration frames; :meth:`recalibrate` repeats it.
        ``share_repeats``: each distinct binary pattern the encoding produces is acquired once
        and reused by every vector containing it (far fewer frames for one-hot-like data; those
        vectors then share that pattern's noise draw).
        """
        self._require_open()
        a = np.asarray(x)
        if a.ndim not in (1, 2):
            raise opu.ShapeError(f"x must be (n,) or (batch, n), got shape {a.shape}")
        dt = opu.projection_dtype(dtype)  # checked before anything is acquired
        proj = self.projector(a.shape[-1], scheme, precision, **scheme_options)
        return proj.transform(a, share_repeats=share_repeats, dtype=dt)

    def recalibrate(self) -> None:
        """Repeat the linear calibrations (after drift, or a change made outside this object)."""
        for proj in self._projectors.values():
            proj.recalibrate()

    # ------------------------------------------------------------------ simulator only (SIM:)
    def _require_simulated(self, what: str) -> None:
        self._require_open()
        if not self.identity.is_simulated:
            raise DriverError(
                f"{what} exists only on a simulated device (SIM: subsystem); "
                f"{self.identity.model} is real hardware",
                resource=self.resource,
            )

    def _sim(self, name: str, value: str) -> None:
        """Send ``SIM:<name> <value>`` (or its in-process equivalent). Simulated devices override."""
        raise DriverError(f"this device type does not implement SIM:{name}", resource=self.resource)

    def _sim_config_json(self) -> str:
        raise DriverError("this device type does not implement SIM:CONF?", resource=self.resource)

    def sim_config(self) -> opu.OPUConfig:
        """The simulated device's complete :class:`opu.OPUConfig` as it is now (``SIM:CONF?``):
        the device's settings included, e.g. to build a noiseless twin with :class:`opu.Simulator`."""
        self._require_simulated("sim_config")
        return opu.OPUConfig.model_validate_json(self._sim_config_json())

    def set_seed(self, seed: int) -> None:
        """Re-seed the simulated device (transmission matrix, noise maps, frame noise) and reset
        its frame counter: the same seed and the same patterns give bit-identical frames."""
        self._require_simulated("set_seed")
        if not (isinstance(seed, int | np.integer) and 0 <= int(seed) < 2**32):
            raise DriverError(f"seed must be an integer in [0, 2**32), got {seed!r}", resource=self.resource)
        self._sim("SEED", str(int(seed)))
        self._projectors.clear()

    def set_noise(self, on: bool) -> None:
        """Switch the simulated device's frame noise on or off (off: expected values, quantized)."""
        self._require_simulated("set_noise")
        self._sim("NOIS", "ON" if on else "OFF")
        self._projectors.clear()

    def sync_clock(self, frames_total: int, device_time_s: float) -> None:
        """Move a simulated device's frame counter and clock forward (``SIM:CLOCk``).

        Resuming an interrupted run: frame noise is keyed by the device's global frame counter and
        the medium drifts with device time, so a fresh simulated device set to the counters saved
        with a checkpoint continues exactly as the uninterrupted run would have. Real hardware
        has no such control (:class:`DriverError`); the clock never goes back (:class:`DeviceError`).
        """
        self._require_simulated("sync_clock")
        frames = int(frames_total)
        seconds = float(device_time_s)
        if frames < 0 or not np.isfinite(seconds) or seconds < 0:
            raise DriverError(f"sync_clock needs frames >= 0 and a finite time >= 0 s, got "
                              f"({frames_total!r}, {device_time_s!r})", resource=self.resource)
        self._sim("CLOC", f"{frames},{seconds!r}")

    def inject_fault(self, kind: str, arg: int | None = None) -> None:
        """Arm one emulator fault (docs/protocol.md, ``SIM:FAULt``).

        ``"DROP"`` (connection closed half-way through the next block), ``"DELAY"`` (the next reply
        comes ``arg`` ms late), ``"TRUNC"``/``"CORR"`` (the next block header is truncated /
        corrupted), ``"ERR"`` (error ``arg`` is queued: the next checked command reports it),
        ``"SAT"`` (the next acquisition saturates), ``"CLE"`` (disarm all). Long forms accepted.
        The transport faults only act on the wire (``VisaDevice``).
        """
        self._require_simulated("inject_fault")
        k = FAULT_WORDS.get(str(kind).upper())
        if k is None:
            raise DriverError(f"unknown fault {kind!r}; choose one of {sorted(FAULT_BY_NAME)}",
                              resource=self.resource)
        needs = bool(FAULT_BY_NAME[k].arg)
        if needs != (arg is not None):
            raise DriverError(f"fault {k} {'needs' if needs else 'takes no'} argument",
                              resource=self.resource)
        self._sim("FAUL", k if arg is None else f"{k},{int(arg)}")


def _dump(changes: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.model_dump() if isinstance(v, BaseModel) else v) for k, v in changes.items()}


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: int, show: bool, resource: str) -> Any:
    if not show:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="frame", desc=f"acquire {resource}", leave=False)


__all__ = [
    "DMD_MAX_HEIGHT_MIRRORS",
    "DMD_MAX_WIDTH_MIRRORS",
    "PROGRESS_MIN_FRAMES",
    "CameraRoi",
    "Device",
    "DeviceIdentity",
    "DeviceSettings",
    "DeviceStatus",
    "InputRoi",
    "settings_changes",
]
