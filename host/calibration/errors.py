"""Typed errors of the calibration tool: each says what went wrong and what to do about it."""

from __future__ import annotations


class CalibrationError(Exception):
    """Base class of every calibration failure (a measurement that cannot give a valid figure)."""


class PlanError(CalibrationError):
    """The requested precision cannot be reached with the allowed frames (raised before measuring)."""


class SaturatedDeviceError(CalibrationError):
    """Frames sit at the ADC maximum even with the least light the tool can set."""


class NoLightError(CalibrationError):
    """Lit patterns are no brighter than dark frames even with the most light the tool can set."""
