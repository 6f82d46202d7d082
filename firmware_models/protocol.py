"""The instrument protocol as data: every device setting and every fault kind, declared once.

docs/protocol.md (sections 4.3 and 4.7) is the prose form of these tables. What is built from them:

* the firmware model (:mod:`firmware_models.settings`, :mod:`firmware_models.scpi_front`): range
  checks, power-on values, consistency checks (-221), the SCPI set/query rows of every setting, the
  accepted fault words;
* the host drivers (``drivers.visa``, ``drivers.base``): the SCPI command of each setting, the parsers
  of the query replies, ``DeviceSettings``'s defaults, bounds and consistency check, the fault words
  ``Device.inject_fault`` accepts.

A test checks every consumer against these tables and the tables against docs/protocol.md
(tests/firmware/test_fw_protocol.py), so a new setting is added here (and in the docs) only.

This module is protocol data, not emulator code: it imports nothing of the emulator, and the
drivers may import it (layers: drivers -> firmware_models -> opu).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from opu.config import (
    CAMERA_MAX_HEIGHT_PX,
    CAMERA_MAX_WIDTH_PX,
    DMD_MAX_HEIGHT_MIRRORS,
    DMD_MAX_WIDTH_MIRRORS,
)

MANUFACTURER = "OpenOPU"


@dataclass(frozen=True)
class DeviceSize:
    """The sensor and DMD dimensions one device has (pixels, mirrors); they bound some settings."""

    sensor_height_px: int
    sensor_width_px: int
    dmd_height_mirrors: int
    dmd_width_mirrors: int


#: the largest device the protocol describes: its hard limits (``drivers.DeviceSettings``'s bounds)
PROTOCOL_SIZE = DeviceSize(CAMERA_MAX_HEIGHT_PX, CAMERA_MAX_WIDTH_PX, DMD_MAX_HEIGHT_MIRRORS,
                           DMD_MAX_WIDTH_MIRRORS)


def short_form(header: str) -> str:
    """SCPI short form of a long header: the upper-case letters (and digits, ``*``) of each node."""
    return ":".join("".join(ch for ch in node if ch.isupper() or ch.isdigit() or ch == "*")
                    for node in header.split(":"))


@dataclass(frozen=True)
class Setting:
    """One device setting.

    ``name``: its key (``DeviceSettings`` field, ``Controller.get_settings()`` key);
    ``header``: SCPI header, long form with the short form in upper case (``CAMera:EXPosure``);
    ``kind``: ``"float"``, ``"int"`` or ``"roi"`` (4 integers ``row,col,height,width``);
    ``unit``: of the value (``"us"``, ``"dB"``, ``""``; an ROI's unit is that of its fields);
    ``lo``, ``hi``: inclusive range; ``hi`` may depend on the device's size (a function of
    :class:`DeviceSize`); unused for ROIs, which must lie inside ``area`` (``"sensor"`` or ``"dmd"``);
    ``choices``: the only values allowed, if any; ``fields``: an ROI's field names in wire order;
    ``power_on``: the value after power-on and ``*RST`` on the default bench (``opu.realistic()``);
    ``help``: what it is, for errors and docs.
    """

    name: str
    header: str
    kind: Literal["float", "int", "roi"]
    unit: str
    help: str
    power_on: Any
    lo: float = 0
    hi: float | Callable[[DeviceSize], int] = 0
    choices: tuple[int, ...] = ()
    fields: tuple[str, ...] = ()
    area: Literal["", "sensor", "dmd"] = ""

    @property
    def short(self) -> str:
        """The short header the drivers send (``CAM:EXP``)."""
        return short_form(self.header)

    def upper(self, size: DeviceSize = PROTOCOL_SIZE) -> float:
        """Largest allowed value on a device of ``size`` (protocol limit by default)."""
        return self.hi(size) if callable(self.hi) else self.hi

    def format(self, value: Any) -> str:
        """The value as SCPI text: set argument and query reply (floats in Python ``repr``)."""
        if self.kind == "roi":  # a mapping of ``fields`` or 4 integers in wire order
            items = [value[k] for k in self.fields] if isinstance(value, Mapping) else value
            return ",".join(str(int(v)) for v in items)
        if self.kind == "float":
            return repr(float(value))
        return str(int(value))

    def parse(self, text: str) -> Any:
        """A query reply back to a value (ROIs as a dict of ``fields``); ``ValueError`` if malformed."""
        if self.kind == "roi":
            parts = [int(v) for v in text.split(",")]
            if len(parts) != len(self.fields):
                raise ValueError(f"{self.short}? reply {text!r} is not {len(self.fields)} comma-separated "
                                 "integers")
            return dict(zip(self.fields, parts, strict=True))
        return float(text) if self.kind == "float" else int(text)


CAMERA_ROI_FIELDS = ("row", "col", "height_px", "width_px")
INPUT_ROI_FIELDS = ("row", "col", "height_mirrors", "width_mirrors")

#: every setting, in the order of ``Controller.get_settings()`` and ``drivers.DeviceSettings``
SETTINGS: tuple[Setting, ...] = (
    Setting("n_features", "DMD:FEATures", "int", "", "number of input features n", 1024,
            lo=1, hi=lambda s: s.dmd_height_mirrors * s.dmd_width_mirrors),
    Setting("exposure_us", "CAMera:EXPosure", "float", "us", "exposure", 400.0, lo=1.0, hi=1e6),
    Setting("frame_time_us", "CAMera:FTIMe", "float", "us", "frame time (frame period)", 500.0,
            lo=1.0, hi=1e7),
    Setting("bit_depth", "CAMera:BITS", "int", "", "ADC bit depth", 8, lo=8, hi=12, choices=(8, 10, 12)),
    Setting("analog_gain_db", "CAMera:GAIN", "float", "dB", "analog gain", 0.0, lo=0.0, hi=24.0),
    Setting("camera_roi", "CAMera:ROI", "roi", "px", "camera region of interest",
            {"row": 508, "col": 928, "height_px": 64, "width_px": 64},
            fields=CAMERA_ROI_FIELDS, area="sensor"),
    Setting("input_roi", "DMD:ROI", "roi", "mirrors", "input region of interest on the DMD",
            {"row": 0, "col": 0, "height_mirrors": DMD_MAX_HEIGHT_MIRRORS,
             "width_mirrors": DMD_MAX_WIDTH_MIRRORS}, fields=INPUT_ROI_FIELDS, area="dmd"),
    Setting("macro_pixel_mirrors", "DMD:MACRopixel", "int", "mirrors",
            "mirrors per side of one feature's square macro-pixel", 1,
            lo=1, hi=lambda s: min(s.dmd_height_mirrors, s.dmd_width_mirrors)),
)
SETTING_BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
SETTING_KEYS: tuple[str, ...] = tuple(SETTING_BY_NAME)


@dataclass(frozen=True)
class Rule:
    """A consistency rule between settings (-221 on the device, ``ValueError`` in ``DeviceSettings``).

    ``check(settings)`` returns None when the settings (a mapping name -> value, ROIs as mappings)
    obey the rule, else the detail of the violation.
    """

    settings: tuple[str, ...]
    summary: str
    check: Callable[[Mapping[str, Any]], str | None] = field(repr=False)


def _exposure_fits(s: Mapping[str, Any]) -> str | None:
    if s["frame_time_us"] < s["exposure_us"]:
        return (f"frame_time_us={s['frame_time_us']!r} must be >= exposure_us={s['exposure_us']!r} "
                "(the exposure fits inside the frame time)")
    return None


def _macro_fits(s: Mapping[str, Any]) -> str | None:
    r, a = s["input_roi"], s["macro_pixel_mirrors"]
    if a > r["height_mirrors"] or a > r["width_mirrors"]:
        return (f"macro_pixel_mirrors={a} does not fit the {r['height_mirrors']}x{r['width_mirrors']}"
                "-mirror input ROI")
    return None


def feature_capacity(input_roi: Mapping[str, int], macro_pixel_mirrors: int) -> int:
    """Most features the input ROI holds with square macro-pixels of ``macro_pixel_mirrors``."""
    a = macro_pixel_mirrors
    return (input_roi["height_mirrors"] // a) * (input_roi["width_mirrors"] // a)


def _features_fit(s: Mapping[str, Any]) -> str | None:
    r, a = s["input_roi"], s["macro_pixel_mirrors"]
    cap = feature_capacity(r, a)
    if s["n_features"] > cap:
        return (f"n_features={s['n_features']} does not fit the {r['height_mirrors']}x{r['width_mirrors']}"
                f"-mirror input ROI with {a}-mirror macro-pixels (max {cap})")
    return None


#: consistency rules, checked in this order on the result of a change
RULES: tuple[Rule, ...] = (
    Rule(("exposure_us", "frame_time_us"), "exposure <= frame time", _exposure_fits),
    Rule(("macro_pixel_mirrors", "input_roi"), "macro-pixel fits the ROI", _macro_fits),
    Rule(("n_features", "input_roi", "macro_pixel_mirrors"), "features fit the input ROI", _features_fit),
)


def first_violation(settings: Mapping[str, Any]) -> str | None:
    """The detail of the first rule ``settings`` break (None: consistent)."""
    for rule in RULES:
        detail = rule.check(settings)
        if detail is not None:
            return detail
    return None


# ---------------------------------------------------------------------------- faults (SIM:FAULt)
@dataclass(frozen=True)
class Fault:
    """One emulator fault kind. ``word``: SCPI character data, short form in upper case
    (``DELay``); ``arg``: ``"ms"`` (a delay), ``"code"`` (an error code) or ``""`` (none);
    ``aliases``: other spellings the host driver accepts (it sends the long form);
    ``on_wire``: only a transport can show it (no effect through the in-process Python API)."""

    word: str
    arg: Literal["", "ms", "code"]
    help: str
    on_wire: bool = False
    aliases: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The canonical (long, upper-case) name: what is sent and what ``SIM:FAUL?`` lists."""
        return self.word.upper()

    @property
    def forms(self) -> tuple[str, ...]:
        """The words the device accepts (upper case): short and long form."""
        return tuple(dict.fromkeys((short_form(self.word), self.name)))


FAULTS: tuple[Fault, ...] = (
    Fault("DROP", "", "the next response carrying a block is cut half-way and the connection closed",
          on_wire=True),
    Fault("DELay", "ms", "the next response is sent <ms> milliseconds late", on_wire=True),
    Fault("TRUNcate", "", "the next block header is cut after half its length digits", on_wire=True,
          aliases=("TRUNC",)),
    Fault("CORRupt", "", "the next block header's digit count is replaced by 'X'", on_wire=True),
    Fault("ERRor", "code", "queues error <code> at once"),
    Fault("SATurate", "", "the next acquisition runs with 1000 x the light"),
    Fault("CLEar", "", "disarms every fault"),
)
FAULT_BY_NAME: dict[str, Fault] = {f.name: f for f in FAULTS}
#: word (upper case) the device accepts -> canonical fault name
FAULT_KINDS: dict[str, str] = {form: f.name for f in FAULTS for form in f.forms}
#: the same plus the host-side aliases (``drivers.Device.inject_fault``)
FAULT_WORDS: dict[str, str] = {**FAULT_KINDS, **{a: f.name for f in FAULTS for a in f.aliases}}
#: SIM:FAULt DELay's largest argument, milliseconds
MAX_DELAY_MS = 600_000

__all__ = [
    "FAULTS",
    "FAULT_BY_NAME",
    "FAULT_KINDS",
    "FAULT_WORDS",
    "MANUFACTURER",
    "MAX_DELAY_MS",
    "PROTOCOL_SIZE",
    "RULES",
    "SETTINGS",
    "SETTING_BY_NAME",
    "SETTING_KEYS",
    "DeviceSize",
    "Fault",
    "Rule",
    "Setting",
    "feature_capacity",
    "first_violation",
    "short_form",
]
