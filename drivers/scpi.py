"""The SCPI vocabulary both device paths share: the set command of a setting (built from the protocol's
settings table) and the error-queue check after a command (PyMeasure's ``check_set_errors``).

The in-process device (:mod:`drivers.sim`) names its calls by these commands and reads the
controller's queue with :func:`check_error_queue`, so both paths report the same errors alike.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from firmware_models.protocol import SETTING_BY_NAME

from .errors import DeviceError, SaturationWarning


def scpi_set_command(name: str, value: Any) -> str:
    """The SCPI set command for one :class:`DeviceSettings` field (docs/protocol.md, section 4.3)."""
    setting = SETTING_BY_NAME[name]
    if isinstance(value, BaseModel):
        value = value.model_dump()
    return f"{setting.short} {setting.format(value)}"


#: positive device codes that are warnings: the command did its work (docs/protocol.md)
WARNING_CODES = {210: SaturationWarning}


def check_error_queue(next_error: Callable[[], tuple[int, str]], command: str, resource: str) -> None:
    """Read the error queue after ``command``: warnings are issued, the first error is raised.

    The queue is read until empty (later entries are consequences of the first error), as both
    device paths do, so they report alike.
    """
    first: tuple[int, str] | None = None
    for _ in range(64):
        code, message = next_error()
        if code == 0:
            break
        if code in WARNING_CODES:
            warnings.warn(f"{message} (device warning {code} after {command!r}) [{resource}]",
                          WARNING_CODES[code], stacklevel=4)
        elif first is None:
            first = (code, message)
    if first is not None:
        raise DeviceError(first[0], first[1], command=command, resource=resource)


__all__ = ["WARNING_CODES", "check_error_queue", "scpi_set_command"]
