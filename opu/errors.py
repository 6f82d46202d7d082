"""Typed errors of the physics model.

Every error names what was wrong and what is allowed, so a user never has to read a numpy traceback.
All derive from :class:`OPUError` (itself a :class:`ValueError`, so generic ``except ValueError``
handlers keep working).
"""

from __future__ import annotations


class OPUError(ValueError):
    """Base class of every error raised by :mod:`opu`."""


class PatternError(OPUError):
    """A DMD pattern is not acceptable: non-binary values, wrong dtype or wrong shape."""


class ShapeError(OPUError):
    """An array has a shape the operation cannot take (batch layout, feature count, ...)."""


class CapacityError(OPUError):
    """A request exceeds the device geometry (more features than mirrors, ROI off the sensor, ...)."""


class ConfigError(OPUError):
    """A configuration is inconsistent (beyond what field-level validation catches)."""
