"""The device's error codes (SCPI-99 negative codes, device-specific positive codes).

docs/protocol.md lists when each is raised. Messages on the queue read ``"<standard text>; <detail>"``.
Also the range checks shared by the firmware modules (:func:`int_in`, :func:`float_in`).
"""

from __future__ import annotations

import math
import numbers

#: code -> standard text (SCPI-99 for negative codes; this device's own for positive codes)
ERROR_TEXT: dict[int, str] = {
    -100: "Command error",
    -102: "Syntax error",
    -104: "Data type error",
    -108: "Parameter not allowed",
    -109: "Missing parameter",
    -113: "Undefined header",
    -160: "Block data error",
    -161: "Invalid block data",
    -168: "Block data not allowed",
    -200: "Execution error",
    -221: "Settings conflict",
    -222: "Data out of range",
    -223: "Too much data",
    -224: "Illegal parameter value",
    -350: "Queue overflow",
    -410: "Query INTERRUPTED",
    201: "Pattern memory overflow",
    202: "No sequence uploaded",
    203: "Laser off",
    204: "No frames ready",
    205: "Frame buffer overflow",
    210: "Frames saturated",
}

#: positive codes that are warnings (the command did its work; the entry informs the host)
WARNING_CODES = frozenset({210})


class FirmwareError(Exception):
    """A command the device refused. ``code``: SCPI error code; ``message``: the queue's text."""

    def __init__(self, code: int, detail: str) -> None:
        text = ERROR_TEXT.get(code, "Device error")
        message = detail if detail.startswith(text) else f"{text}; {detail}"
        super().__init__(f"{code}, {message}")
        self.code = int(code)
        self.message = message


# ---------------------------------------------------------------------------- value checks
def int_in(value: object, what: str, lo: int, hi: int) -> int:
    """``value`` as an int in ``lo..hi``; -104 if it is not an integer, -222 if out of range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise FirmwareError(-104, f"{what} must be an integer, got {value!r}")
    v = int(value)
    if not lo <= v <= hi:
        raise FirmwareError(-222, f"{what}={v} is out of range; allowed {lo}..{hi}")
    return v


def float_in(value: object, what: str, lo: float, hi: float, unit: str) -> float:
    """``value`` as a finite float in ``lo..hi`` (``unit`` for the message); -104 / -222."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise FirmwareError(-104, f"{what} must be a number ({unit}), got {value!r}")
    v = float(value)
    if not (math.isfinite(v) and lo <= v <= hi):
        raise FirmwareError(-222, f"{what}={v!r} {unit} is out of range; allowed {lo!r}..{hi!r} {unit}")
    return v
