"""Typed errors of the transmission-matrix tool: each says what went wrong and what to do about it.

The light-level refusals reuse the calibration's error types (same meaning: a device too bright or
too dark to measure), so a caller catching them for ``opu calibrate`` catches them here too.
"""

from __future__ import annotations

from host.calibration.errors import NoLightError, SaturatedDeviceError


class TMError(Exception):
    """Base class of every transmission-matrix retrieval failure."""


class TMPlanError(TMError):
    """The requested plan is impossible or exceeds the allowed frames (raised before any frame)."""


class TMFileError(TMError):
    """A ``tm.npz`` is missing, unreadable or inconsistent."""


__all__ = ["NoLightError", "SaturatedDeviceError", "TMError", "TMFileError", "TMPlanError"]
