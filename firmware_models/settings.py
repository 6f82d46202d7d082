"""The device settings as a transaction: stage changes, check them, commit or roll back.

Ranges (-222) and types (-104) are checked as each value is staged; the consistency rules (-221,
:data:`firmware_models.protocol.RULES`) on the result when the transaction commits, so related
settings change atomically (docs/protocol.md, section 2). Everything comes from the settings table
in :mod:`firmware_models.protocol`; only the device's own size (sensor, DMD) is added here.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import opu

from .errors import FirmwareError, float_in, int_in
from .protocol import SETTING_BY_NAME, SETTING_KEYS, SETTINGS, DeviceSize, Setting, first_violation

Settings = dict[str, Any]  # name -> value; ROIs as dicts of their fields


def device_size(config: opu.OPUConfig) -> DeviceSize:
    """The sensor and DMD dimensions of a bench config."""
    c, d = config.camera, config.dmd
    return DeviceSize(c.sensor_height_px, c.sensor_width_px, d.height_mirrors, d.width_mirrors)


def power_on_settings(config: opu.OPUConfig) -> Settings:
    """The settings a bench config implies (its camera and DMD values), checked against the ranges
    of the float settings (the config's own validation covers the rest)."""
    cam, dmd = config.camera, config.dmd
    if cam.bit_depth is None:
        raise FirmwareError(-222, "camera.bit_depth=None (ideal float detector) cannot be sent by the "
                            "device; use 8, 10 or 12")
    h, w = dmd.roi_shape_mirrors
    s: Settings = {
        "n_features": min(SETTING_BY_NAME["n_features"].power_on, dmd.max_features),
        "exposure_us": float(cam.exposure_us),
        "frame_time_us": float(cam.frame_time_us),
        "bit_depth": int(cam.bit_depth),
        "analog_gain_db": float(cam.analog_gain_db),
        "camera_roi": {"row": cam.roi.row, "col": cam.roi.col,
                       "height_px": cam.roi.height_px, "width_px": cam.roi.width_px},
        "input_roi": {"row": dmd.roi_row, "col": dmd.roi_col, "height_mirrors": h, "width_mirrors": w},
        "macro_pixel_mirrors": int(dmd.macro_pixel_mirrors),
    }
    for setting in SETTINGS:
        if setting.kind == "float":
            lo, hi = setting.lo, setting.upper()
            if not lo <= s[setting.name] <= hi:
                raise FirmwareError(-222, f"camera {setting.name}={s[setting.name]!r} is outside the device "
                                    f"range [{lo!r}, {hi!r}]")
    return s


def check_value(name: str, value: Any, size: DeviceSize) -> Any:
    """``value`` checked for setting ``name`` on a device of ``size`` (-113, -104, -222)."""
    setting = SETTING_BY_NAME.get(name)
    if setting is None:
        raise FirmwareError(-113, f"unknown setting {name!r}; settings are {', '.join(SETTING_KEYS)}")
    if setting.kind == "roi":
        return _roi_inside(_roi(value, setting), setting, size)
    if setting.kind == "float":
        return float_in(value, name, setting.lo, setting.upper(size), setting.unit)
    v = int_in(value, name, int(setting.lo), int(setting.upper(size)))
    if setting.choices and v not in setting.choices:
        raise FirmwareError(-222, f"{name}={v} is not supported; allowed: "
                            f"{', '.join(str(c) for c in setting.choices)}")
    return v


def check_consistent(s: Mapping[str, Any]) -> None:
    """Raise -221 with the first consistency rule ``s`` breaks."""
    detail = first_violation(s)
    if detail is not None:
        raise FirmwareError(-221, detail)


class SettingsTxn:
    """The current settings and the transaction in progress.

    ``stage`` checks and applies one value at once (so later commands of a line see it) and keeps
    the settings from before the transaction; ``commit`` checks consistency on the result and
    returns those old settings when something changed (the caller applies the side effects), or
    rolls everything back and raises -221.
    """

    def __init__(self, values: Settings, size: DeviceSize) -> None:
        self.values = values
        self.size = size
        self._before: Settings | None = None

    def snapshot(self) -> Settings:
        """A fresh copy of the current values (ROIs copied too)."""
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.values.items()}

    def stage(self, name: str, value: Any) -> None:
        checked = check_value(name, value, self.size)
        if self._before is None:
            self._before = self.snapshot()
        self.values[name] = checked

    def rollback(self) -> None:
        if self._before is not None:
            self.values = self._before
            self._before = None

    def commit(self) -> Settings | None:
        """End the transaction: None if nothing was staged or nothing changed, else the old values."""
        if self._before is None:
            return None
        old = self._before
        try:
            check_consistent(self.values)
        except FirmwareError:
            self.rollback()
            raise
        self._before = None
        return None if self.values == old else old

    def replace(self, values: Settings, size: DeviceSize) -> None:
        """Start over from ``values`` on a device of ``size`` (reset, a new bench); no transaction."""
        self._before = None
        self.values = values
        self.size = size


def _roi(value: Any, setting: Setting) -> dict[str, int]:
    what, keys = setting.name, setting.fields
    if hasattr(value, "model_dump"):
        value = value.model_dump()
    if isinstance(value, Mapping):
        if set(value) != set(keys):
            raise FirmwareError(-104, f"{what} must have exactly the keys {', '.join(keys)}, "
                                f"got {sorted(value)}")
        items = [value[k] for k in keys]
    elif isinstance(value, list | tuple) and len(value) == 4:
        items = list(value)
    else:
        raise FirmwareError(-104, f"{what} must be a mapping ({', '.join(keys)}) or 4 integers, "
                            f"got {value!r}")
    out = {}
    for k, v in zip(keys, items, strict=True):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise FirmwareError(-104, f"{what}.{k} must be an integer, got {v!r}")
        out[k] = int(v)
    return out


def _roi_inside(r: dict[str, int], setting: Setting, size: DeviceSize) -> dict[str, int]:
    if setting.area == "sensor":
        height, width, device = size.sensor_height_px, size.sensor_width_px, "sensor"
    else:
        height, width, device = size.dmd_height_mirrors, size.dmd_width_mirrors, "DMD"
    row, col, h, w = (r[k] for k in setting.fields)
    if row < 0 or col < 0 or h < 1 or w < 1 or row + h > height or col + w > width:
        raise FirmwareError(-222, f"{setting.name} (row={row}, col={col}, height={h}, width={w}) must lie "
                            f"inside the {height}x{width}-{setting.unit} {device} with height, width >= 1")
    return r
