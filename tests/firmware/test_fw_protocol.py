"""The settings and fault tables (firmware_models/protocol.py) against docs/protocol.md and against
every consumer: the controller's SCPI front end, drivers.DeviceSettings, the VISA driver's commands
and Device.inject_fault. The expected values are read from the document, not from the tables."""

from __future__ import annotations

import re
from pathlib import Path

import pydantic
import pytest

import opu
from drivers import DeviceSettings
from drivers.scpi import scpi_set_command
from drivers.sim import SimDevice
from firmware_models import Controller, FirmwareError
from firmware_models.protocol import FAULTS, RULES, SETTINGS

DOC = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()


def _section(title: str) -> str:
    start = DOC.index(title)
    end = DOC.find("\n#", start + len(title))
    return DOC[start: end if end > 0 else None]


def _rows(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in text.splitlines() if line.startswith("| `")]


def _short(header: str) -> str:
    return ":".join("".join(ch for ch in node if ch.isupper()) for node in header.split(":"))


def _number(text: str) -> float:
    """``"1e6"`` or a product ``"912 x 1140"``."""
    out = 1.0
    for factor in text.split(" x "):
        out *= float(factor)
    return out


#: header -> (argument cell, range cell, power-on cell) of the settings table, section 4.3
DOC_SETTINGS = {cells[0].strip("`"): cells[1:4] for cells in _rows(_section("### 4.3 Settings"))
                if not cells[0].endswith("?`")}
#: fault word (e.g. "DELay") -> argument ("", "ms", "code"), section 4.7
DOC_FAULTS = {m.group(1): m.group(2) or "" for cells in _rows(_section("Fault kinds"))
              if (m := re.fullmatch(r"`([A-Za-z]+)(?:,<(\w+)>)?`", cells[0]))}
UNIT_WORDS = {"us": "microseconds", "dB": "dB", "px": "pixels", "mirrors": "mirrors"}
_RANGE = re.compile(r"^([0-9.e+]+) \.\. ([0-9.e+]+(?: x [0-9]+)?)")


def doc_range(header: str) -> tuple[float, float] | None:
    m = _RANGE.match(DOC_SETTINGS[header][1])
    return None if m is None else (_number(m.group(1)), _number(m.group(2)))


def test_the_settings_table_is_the_documented_one():
    assert set(DOC_SETTINGS) == {s.header for s in SETTINGS}
    for s in SETTINGS:
        arg, rng, power_on = DOC_SETTINGS[s.header]
        kind = {"`<num>`": "float", "`<int>`": "int", "`<row>,<col>,<height>,<width>`": "roi"}[arg.split()[0]]
        assert kind == s.kind, s.name
        if s.unit:
            assert UNIT_WORDS[s.unit] in arg, s.name
        assert power_on == s.format(s.power_on), s.name
        if s.choices:
            assert tuple(int(v) for v in rng.split(",")) == s.choices
        elif s.kind == "roi":
            assert rng.startswith(f"inside the {'sensor' if s.area == 'sensor' else 'DMD'}")
        else:
            assert doc_range(s.header) == (s.lo, s.upper()), s.name


def test_the_consistency_rules_are_the_documented_ones():
    text = DOC[DOC.index("**Settings are checked together per line.**"):][:600]
    listed = re.search(r"\(-221: ([^)]+)\)", " ".join(text.split())).group(1)
    assert {r.summary for r in RULES} == {p.strip() for p in listed.split(",")}


@pytest.mark.parametrize("header", sorted(DOC_SETTINGS))
def test_the_controller_answers_each_documented_setting_in_both_header_forms(header):
    c = Controller()
    power_on = DOC_SETTINGS[header][2]
    for form in (header, _short(header), header.lower()):
        assert c.handle(f"{form}?".encode()) == power_on.encode() + b"\n"
        assert c.handle(f"{form} {power_on}".encode()) is None
        assert c.next_error() == (0, "No error")


def _code_after(c: Controller, line: str) -> int:
    c.handle(line.encode())
    code = c.next_error()[0]
    while c.next_error()[0]:
        pass
    c.reset()
    return code


@pytest.mark.parametrize("header", sorted(h for h in DOC_SETTINGS if doc_range(h)))
def test_the_controller_refuses_exactly_outside_the_documented_range(header):
    lo, hi = doc_range(header)
    c = Controller()  # the default bench has the protocol's largest sensor and DMD
    integer = DOC_SETTINGS[header][0].startswith("`<int>`")
    step = 1 if integer else 1e-6 * max(abs(hi), 1)
    fmt = (lambda v: str(int(v))) if integer else repr
    for inside in (lo, hi):
        assert _code_after(c, f"{header} {fmt(inside)}") != -222, inside  # -221 may follow
    for outside in (lo - step, hi + step):
        assert _code_after(c, f"{header} {fmt(outside)}") == -222, outside


def test_the_controller_takes_only_the_documented_bit_depths():
    choices = [int(v) for v in DOC_SETTINGS["CAMera:BITS"][1].split(",")]
    c = Controller()
    for bits in range(6, 15):
        assert (_code_after(c, f"CAM:BITS {bits}") == 0) == (bits in choices), bits


def test_device_settings_defaults_and_bounds_are_the_documented_ones():
    schema = DeviceSettings.model_json_schema()
    defaults = DeviceSettings()
    by_header = {s.header: s.name for s in SETTINGS}
    for header, (arg, _, power_on) in DOC_SETTINGS.items():
        name = by_header[header]
        value = getattr(defaults, name)
        shown = ",".join(str(v) for v in value.model_dump().values()) if arg.startswith("`<row>") else (
            repr(value) if isinstance(value, float) else str(value))
        assert shown == power_on, name
        rng = doc_range(header)
        if rng:
            prop = schema["properties"][name]
            assert (prop["minimum"], prop["maximum"]) == rng, name
    assert schema["properties"]["bit_depth"]["enum"] == [8, 10, 12]


@pytest.mark.parametrize(("changes", "rule"), [
    ({"exposure_us": 600.0}, "exposure"),
    ({"macro_pixel_mirrors": 16, "input_roi": {"row": 0, "col": 0, "height_mirrors": 8, "width_mirrors": 900},
      "n_features": 1}, "macro-pixel"),
    ({"n_features": 10, "input_roi": {"row": 0, "col": 0, "height_mirrors": 3, "width_mirrors": 3}},
     "features"),
])
def test_device_settings_and_the_controller_refuse_the_same_combinations(changes, rule):
    c = Controller()
    base = c.get_settings()
    with pytest.raises(pydantic.ValidationError):
        DeviceSettings.model_validate({**base, **changes})
    with pytest.raises(FirmwareError) as info:
        c.set_settings(changes)
    assert info.value.code == -221
    assert c.get_settings() == base  # rolled back
    # one step back inside the rule is accepted by both
    fixed = {**changes, "frame_time_us": 600.0} if rule == "exposure" else (
        {**changes, "macro_pixel_mirrors": 8} if rule == "macro-pixel" else {**changes, "n_features": 9})
    DeviceSettings.model_validate({**base, **fixed})
    c.set_settings(fixed)


def test_the_drivers_set_commands_use_the_documented_short_headers():
    defaults = DeviceSettings()
    by_name = {s.name: s.header for s in SETTINGS}
    for name in DeviceSettings.model_fields:
        command = scpi_set_command(name, getattr(defaults, name))
        header, _, arg = command.partition(" ")
        assert header == _short(by_name[name]) and arg == DOC_SETTINGS[by_name[name]][2]


def test_the_fault_kinds_are_the_documented_ones():
    assert {f.word: f.arg for f in FAULTS} == DOC_FAULTS


@pytest.mark.parametrize("word", sorted(DOC_FAULTS))
def test_controller_and_driver_accept_each_documented_fault_word(word):
    arg = {"": "", "ms": ",20", "code": ",-200"}[DOC_FAULTS[word]]
    name = word.upper()
    for form in (_short(word), name):
        c = Controller(opu.realistic(seed=0, n_outputs=16))
        assert c.handle(f"SIM:FAUL {form}{arg}".encode()) is None
        armed = c.handle(b"SIM:FAUL?").decode().strip()
        if name in ("CLEAR", "ERROR"):
            assert armed == "NONE"
        else:
            assert armed == name
        assert c.next_error()[0] == (-200 if name == "ERROR" else 0)
        dev = SimDevice(c).open()
        dev.inject_fault(form.lower(), int(arg[1:]) if arg else None)
        assert c.pending_faults.keys() <= {name}
