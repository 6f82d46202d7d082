"""The OPU's firmware model called in-process: no sockets, no text, same behaviour as the instrument.

:class:`SimDevice` drives a :class:`firmware_models.Controller` with direct Python calls. Errors the
controller raises (:class:`firmware_models.FirmwareError`) become :class:`~drivers.errors.DeviceError`
with the same code, message and SCPI command the VISA path reports, so host code and tests see one
behaviour on both paths. Transport faults (dropped connection, delays, corrupted blocks) do not exist
in-process.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import numpy as np

import opu
from firmware_models import Controller, FirmwareError

from .base import Device, DeviceIdentity, DeviceSettings, DeviceStatus, settings_changes
from .errors import DeviceError
from .registry import backend, unknown_uri_message
from .scpi import check_error_queue, scpi_set_command

T = TypeVar("T")


class SimDevice(Device):
    """An in-process simulated OPU.

    Parameters
    ----------
    controller:
        The firmware model to drive; by default a new ``Controller(config)``.
    config:
        Device description for a new controller (default :func:`opu.realistic` with seed 0).
    resource:
        Name used in errors (the URI it came from).
    """

    def __init__(self, controller: Controller | None = None, *, config: opu.OPUConfig | None = None,
                 resource: str = "sim", **controller_options: Any) -> None:
        super().__init__(resource)
        if controller is not None and (config is not None or controller_options):
            raise ValueError("pass either a controller or config/controller options, not both")
        self.controller = controller if controller is not None else Controller(
            config if config is not None else opu.realistic(seed=0), **controller_options)

    def _call(self, command: str, fn: Callable[..., T], *args: Any, check: bool = True) -> T:
        """Run a controller call as the VISA path runs ``command``.

        A FirmwareError becomes the DeviceError the VISA path raises; with ``check`` (set
        commands) the error queue is then read like the VISA driver's ``SYST:ERR?`` check, so
        queued errors and warnings (210 saturation) surface identically.
        """
        try:
            out = fn(*args)
        except FirmwareError as exc:
            self._drain_queue()
            raise DeviceError(exc.code, exc.message, command=command, resource=self.resource) from None
        if check:
            check_error_queue(self.controller.next_error, command, self.resource)
        return out

    def _drain_queue(self) -> None:
        # on the wire, the driver reads SYST:ERR? until the queue is empty after an error
        for _ in range(64):
            if self.controller.next_error()[0] == 0:
                break

    # ------------------------------------------------------------------ Device primitives
    def _open(self) -> None:
        # like a fresh connection to the instrument: state persists, the error queue is the device's
        pass

    def _close(self) -> None:
        pass

    def _query_identity(self) -> DeviceIdentity:
        return DeviceIdentity(*self.controller.identity)

    def _pattern_memory(self) -> int:
        return int(self.controller.pattern_memory)

    def _read_settings(self) -> DeviceSettings:
        return DeviceSettings.model_validate(self.controller.get_settings())

    def _write_settings(self, settings: DeviceSettings) -> None:
        for name, value in settings_changes(self.settings, settings):
            v = value.model_dump() if hasattr(value, "model_dump") else value
            self._call(scpi_set_command(name, value), self.controller.set_setting, name, v)

    def _run_sequence(self, packed: np.ndarray) -> np.ndarray:
        self._call("SEQ:DATA", self.controller.upload_patterns, packed)
        self._call("ACQ:STAR", self.controller.start_acquisition)
        b = packed.shape[0]
        return self._call(f"FETC:FRAM? 0,{b}", self.controller.fetch_frames, 0, b, check=False)

    def fetch_frames(self, start: int = 0, count: int | None = None) -> np.ndarray:
        """Frames ``start .. start+count`` of the frame buffer (see VisaDevice.fetch_frames)."""
        self._require_open()
        return self._call(f"FETC:FRAM? {start},{count}", self.controller.fetch_frames, start, count,
                          check=False)

    def _query_status(self) -> DeviceStatus:
        s = self.controller.status()
        return DeviceStatus(laser_on=bool(s["laser_on"]), temperature_c=float(s["temperature_c"]),
                            frames_total=int(s["frames_total"]), device_time_s=float(s["device_time_s"]))

    def _wait(self, seconds: float) -> None:
        self._call(f"SIM:IDLE {seconds!r}", self.controller.idle, seconds)

    def _sim_config_json(self) -> str:
        return self.controller.config.model_dump_json()

    def _sim(self, name: str, value: str) -> None:
        command = f"SIM:{name} {value}"
        c = self.controller
        if name == "SEED":
            self._call(command, c.set_seed, int(value))
        elif name == "NOIS":
            self._call(command, c.set_noise, value == "ON")
        elif name == "CLOC":
            frames, _, seconds = value.partition(",")
            self._call(command, c.set_clock, int(frames), float(seconds))
        elif name == "FAUL":
            kind, _, arg = value.partition(",")
            # an injected error surfaces at the next checked command, as on the wire
            self._call(command, c.inject_fault, kind, int(arg) if arg else None,
                       check=kind not in ("ERROR", "DELAY"))
        else:
            raise DeviceError(-113, "Undefined header", command=command, resource=self.resource)


@backend("sim", scheme="sim", options=("pattern_memory", "serial", "frame_buffer_bytes"), forms=[
    ("sim", "in-process simulator, opu.realistic(seed=0)"),
    ("sim?seed=3", "same with another seed"),
    ("sim:PATH.json[?seed=3]", "in-process simulator from an opu.OPUConfig JSON file"),
])
def open_sim_uri(uri: str, **options: Any) -> SimDevice:
    """The :class:`SimDevice` for a ``sim[:PATH.json][?seed=N]`` URI (unopened)."""
    body, _, query = uri[3:].partition("?")
    params = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    unknown = set(params) - {"seed"}
    if unknown:
        raise ValueError(f"unknown parameter(s) {sorted(unknown)} in {uri!r}; only 'seed' is accepted")
    seed = None
    if "seed" in params:
        try:
            seed = int(params["seed"])
        except ValueError:
            raise ValueError(f"seed in {uri!r} must be an integer, got {params['seed']!r}") from None
    if body.startswith(":"):
        path = Path(body[1:]).expanduser()
        if not path.is_file():
            raise ValueError(f"simulator config {str(path)!r} (from {uri!r}) is not a file")
        config = opu.OPUConfig.model_validate_json(path.read_text())
        if seed is not None:
            config = config.replace(seed=seed)
    elif body:
        raise ValueError(unknown_uri_message(uri))
    else:
        config = opu.realistic(seed=seed or 0)
    return SimDevice(config=config, resource=uri, **options)


__all__ = ["SimDevice", "open_sim_uri"]
