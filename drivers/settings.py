"""The settings a host may configure, built from the protocol's settings table.

:class:`DeviceSettings` takes its fields' defaults (the power-on values), bounds (the protocol's hard
limits) and consistency check from :mod:`firmware_models.protocol`, where each setting is declared
once; :func:`settings_changes` orders the writes of a change. Both device paths use them.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from firmware_models.protocol import PROTOCOL_SIZE, SETTING_BY_NAME, first_violation

_DMD_H, _DMD_W = PROTOCOL_SIZE.dmd_height_mirrors, PROTOCOL_SIZE.dmd_width_mirrors
_CAM_H, _CAM_W = PROTOCOL_SIZE.sensor_height_px, PROTOCOL_SIZE.sensor_width_px


def _field(name: str) -> Any:
    """A pydantic Field with the setting's power-on default and its protocol range."""
    s = SETTING_BY_NAME[name]
    return Field(s.power_on, ge=s.lo, le=s.upper())


class InputRoi(BaseModel):
    """Input region of interest on the DMD, in mirrors."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    row: int = Field(0, ge=0, lt=_DMD_H)
    col: int = Field(0, ge=0, lt=_DMD_W)
    height_mirrors: int = Field(_DMD_H, ge=1, le=_DMD_H)
    width_mirrors: int = Field(_DMD_W, ge=1, le=_DMD_W)

    @model_validator(mode="after")
    def _inside(self) -> InputRoi:
        if self.row + self.height_mirrors > _DMD_H or self.col + self.width_mirrors > _DMD_W:
            raise ValueError(
                f"input ROI ({self.row}, {self.col}, {self.height_mirrors}, {self.width_mirrors}) "
                f"leaves the {_DMD_H}x{_DMD_W} DMD"
            )
        return self


class CameraRoi(BaseModel):
    """Output region of interest on the camera, in pixels (m = height_px * width_px outputs)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    row: int = Field(0, ge=0, lt=_CAM_H)
    col: int = Field(0, ge=0, lt=_CAM_W)
    height_px: int = Field(..., ge=1, le=_CAM_H)
    width_px: int = Field(..., ge=1, le=_CAM_W)

    @property
    def n_pixels(self) -> int:
        return self.height_px * self.width_px


class DeviceSettings(BaseModel):
    """Everything a host may configure, validated before anything is sent to the device.

    Ranges here are the protocol's hard limits (docs/protocol.md); a device may refuse a value
    inside them that its own hardware cannot do (it then raises :class:`DeviceError`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    n_features: int = _field("n_features")
    exposure_us: float = _field("exposure_us")
    frame_time_us: float = _field("frame_time_us")
    bit_depth: Literal[8, 10, 12] = SETTING_BY_NAME["bit_depth"].power_on
    analog_gain_db: float = _field("analog_gain_db")
    camera_roi: CameraRoi = Field(default_factory=lambda: CameraRoi(**SETTING_BY_NAME["camera_roi"].power_on))
    input_roi: InputRoi = Field(default_factory=lambda: InputRoi(**SETTING_BY_NAME["input_roi"].power_on))
    macro_pixel_mirrors: int = _field("macro_pixel_mirrors")

    @model_validator(mode="after")
    def _consistent(self) -> DeviceSettings:
        detail = first_violation(self.as_values())
        if detail is not None:
            raise ValueError(detail)
        return self

    def as_values(self) -> dict[str, Any]:
        """The settings as protocol values: name -> number, ROIs as dicts of their fields."""
        return self.model_dump()

    @property
    def n_outputs(self) -> int:
        return self.camera_roi.n_pixels

    @property
    def adc_max_dn(self) -> int:
        return 2**self.bit_depth - 1

    @property
    def frame_dtype(self) -> np.dtype:
        return np.dtype(np.uint8 if self.bit_depth <= 8 else np.uint16)


def settings_changes(old: DeviceSettings, new: DeviceSettings) -> list[tuple[str, Any]]:
    """The (field, value) writes turning ``old`` into ``new``, in an order valid at every step.

    Exposure and frame time are ordered so that ``frame_time_us >= exposure_us`` always holds; when
    the input ROI or the macro-pixel changes, ``n_features`` is first lowered to 1 (which fits any
    ROI) and set to its new value last. Both device paths use this order, so they fail alike.
    """
    out: list[tuple[str, Any]] = []
    if new.exposure_us != old.exposure_us or new.frame_time_us != old.frame_time_us:
        exp, ftim = ("exposure_us", new.exposure_us), ("frame_time_us", new.frame_time_us)
        out += [ftim, exp] if new.exposure_us > old.frame_time_us else [exp, ftim]
    for name in ("bit_depth", "analog_gain_db", "camera_roi"):
        if getattr(new, name) != getattr(old, name):
            out.append((name, getattr(new, name)))
    dmd_changed = new.input_roi != old.input_roi or new.macro_pixel_mirrors != old.macro_pixel_mirrors
    if dmd_changed:
        if old.n_features != 1:
            out.append(("n_features", 1))
        roi, macro = ("input_roi", new.input_roi), ("macro_pixel_mirrors", new.macro_pixel_mirrors)
        # a larger macro-pixel may need the new (larger) ROI first, a smaller ROI the smaller macro
        out += [roi, macro] if new.macro_pixel_mirrors > old.macro_pixel_mirrors else [macro, roi]
    if new.n_features != old.n_features or (dmd_changed and new.n_features != 1):
        out.append(("n_features", new.n_features))
    return out


__all__ = ["CameraRoi", "DeviceSettings", "InputRoi", "settings_changes"]
