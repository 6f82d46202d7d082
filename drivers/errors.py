"""Typed exceptions of the host drivers.

Every error carries the resource it came from; device errors also carry the device's error-queue
entry (``code``, ``message``) and the command that caused it. A driver never returns a silently
wrong or partial array: it raises one of these instead.
"""

from __future__ import annotations

from opu.linear import SaturationWarning  # frames at the ADC maximum (a warning, not an error)


class DriverError(Exception):
    """Base class of every driver error. ``resource``: the URI or VISA resource string."""

    def __init__(self, message: str, *, resource: str | None = None) -> None:
        super().__init__(message if resource is None else f"{message} [{resource}]")
        self.resource = resource


class DeviceError(DriverError):
    """The device refused a command: ``code`` and ``message`` from its error queue (SYST:ERR?)."""

    def __init__(
        self, code: int, message: str, *, command: str | None = None, resource: str | None = None
    ) -> None:
        where = f" after {command!r}" if command else ""
        super().__init__(f"device error {code}, {message!r}{where}", resource=resource)
        self.code = code
        self.device_message = message
        self.command = command


class UnsupportedSetting(DeviceError):
    """A backend cannot do this setting at all (not a transient refusal): names the ``setting``, the
    ``value`` asked, the ``backend`` and what it ``allowed``. A :class:`DeviceError` with the SCPI code
    of the same refusal on the wire (-221 settings conflict, -222 data out of range), so host code
    that handles device refusals handles every backend alike."""

    def __init__(self, setting: str, value: object, *, backend: str, allowed: str, code: int = -221,
                 command: str | None = None, resource: str | None = None) -> None:
        shown = value.model_dump() if hasattr(value, "model_dump") else value
        super().__init__(code, f"{setting}={shown!r} is not supported by the {backend} backend; "
                         f"allowed: {allowed}", command=command, resource=resource)
        self.setting = setting
        self.value = value
        self.backend = backend
        self.allowed = allowed


class DeviceTimeout(DriverError):
    """The device did not answer within the timeout (``timeout_s``)."""

    def __init__(self, message: str, *, timeout_s: float | None = None, resource: str | None = None):
        super().__init__(message, resource=resource)
        self.timeout_s = timeout_s


class DeviceBusy(DriverError):
    """Another client holds the device (exclusive access)."""


class ProtocolError(DriverError):
    """The device's reply does not follow docs/protocol.md (bad block header, wrong length, ...)."""


class DeviceDisconnected(DriverError):
    """The connection dropped; the driver closed its side cleanly."""


__all__ = [
    "DeviceBusy",
    "DeviceDisconnected",
    "DeviceError",
    "DeviceTimeout",
    "DriverError",
    "ProtocolError",
    "SaturationWarning",
    "UnsupportedSetting",
]
