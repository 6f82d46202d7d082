"""The SCPI front end: program-message bytes in, response bytes out (docs/protocol.md).

:class:`ScpiFrontEnd` parses a message (:mod:`.scpi`), runs each command on the device core
(:class:`~firmware_models.device.DeviceCore`, Python calls), queues the errors, assembles the
response (blocks framed per IEEE 488.2) and lets the fault plan shape it (:mod:`.faults`). The set
and query rows of every setting are generated from :data:`firmware_models.protocol.SETTINGS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pydantic

import opu

from .errors import ERROR_TEXT, FirmwareError
from .faults import Reply
from .framing import block_header
from .protocol import FAULT_KINDS, SETTINGS, Setting
from .scpi import (
    Command,
    HeaderPattern,
    ScpiError,
    expect_args,
    format_float,
    mentions_query,
    parse_message,
    quote,
    to_block,
    to_bool,
    to_choice,
    to_float,
    to_int,
)

if TYPE_CHECKING:
    from .device import DeviceCore

Handler = Callable[[Command], Any]


@dataclass(frozen=True)
class BlockOut:
    """A query's answer that goes out as a definite-length block."""

    payload: bytes | memoryview


@dataclass(frozen=True)
class Row:
    """One command: header pattern, query form or not, handler, and whether it is a setting (setting
    commands of one line are checked for consistency together, docs/protocol.md section 2)."""

    pattern: HeaderPattern
    query: bool
    handler: Handler
    is_setting: bool = False


class ScpiFrontEnd:
    """Executes program messages on ``core``; see the module docstring."""

    def __init__(self, core: DeviceCore) -> None:
        self.core = core
        self.rows = self._command_table()

    def process(self, request: bytes | bytearray | memoryview) -> Reply:
        """Execute one program message; the reply (None data: nothing to send). Never raises."""
        core = self.core
        parts: list[Any] = []
        answered = False
        try:
            for cmd in parse_message(request):
                handler, is_setting = self._lookup(cmd)
                if not is_setting:
                    core.commit()
                if cmd.query:
                    answered = True
                    parts.append(b"")  # stays empty if the query fails
                    parts[-1] = handler(cmd)
                else:
                    handler(cmd)
            core.commit()
        except (ScpiError, FirmwareError) as exc:
            core.errors.push(exc.code, exc.message)
            self._settle()
            answered = answered or mentions_query(request)
        except Exception as exc:  # a bug must not kill the device: report it as -200
            core.errors.push(-200, f"{ERROR_TEXT[-200]}; internal error {type(exc).__name__}: {exc}")
            self._settle()
            answered = answered or mentions_query(request)
        if not answered:
            return Reply(None)
        return core.faults.shape(*assemble(parts))

    def _settle(self) -> None:
        """After an error mid-message: settings staged so far take effect if consistent."""
        try:
            self.core.commit()
        except FirmwareError as exc:
            self.core.errors.push(exc.code, exc.message)

    def _lookup(self, cmd: Command) -> tuple[Handler, bool]:
        for row in self.rows:
            if row.query == cmd.query and row.pattern.matches(cmd.nodes):
                return row.handler, row.is_setting
        for row in self.rows:
            if row.pattern.matches(cmd.nodes):
                form = "a query only" if row.query else "a command only (no '?' form)"
                raise ScpiError(-113, f"Undefined header; {cmd.header} is {form}")
        raise ScpiError(-113, f"Undefined header; {cmd.header[:60]!r} is not a command of this device")

    # ------------------------------------------------------------------ the command table
    def _command_table(self) -> list[Row]:
        c = self.core
        S, Q = False, True
        lim = c.limits
        table: list[tuple[str, bool, Handler]] = [
            ("*IDN", Q, _nullary(lambda: ",".join(c.identity).encode())),
            ("*RST", S, _nullary(c.reset)),
            ("*CLS", S, _nullary(c.clear_status)),
            ("*OPC", Q, _nullary(lambda: b"1")),
            ("*OPC", S, _nullary(c.errors.operation_complete)),
            ("*WAI", S, _nullary(lambda: None)),
            ("*ESR", Q, self._q_esr),
            ("*STB", Q, _nullary(lambda: str(c.errors.stb).encode())),
            ("*TST", Q, _nullary(lambda: b"0")),
            ("SYSTem:ERRor[:NEXT]", Q, self._q_error),
            ("SYSTem:ERRor:COUNt", Q, _nullary(lambda: str(len(c.errors)).encode())),
            ("SYSTem:VERSion", Q, _nullary(lambda: b"1999.0")),
            ("CAMera:SIZE", Q, _nullary(lambda: f"{lim()[0]},{lim()[1]}".encode())),
            ("DMD:SIZE", Q, _nullary(lambda: f"{lim()[2]},{lim()[3]}".encode())),
            ("SEQuence:DATA", S, lambda cmd: c.upload_block(_one(cmd, to_block, "SEQ:DATA"))),
            ("SEQuence:DATA", Q, _nullary(lambda: BlockOut(c.sequence_bytes()))),
            ("SEQuence:COUNt", Q, _nullary(lambda: str(c.sequence_length).encode())),
            ("SEQuence:CLEar", S, _nullary(c.clear_sequence)),
            ("SEQuence:MAXimum", Q, _nullary(lambda: str(c.pattern_memory).encode())),
            ("ACQuire:STARt", S, _nullary(c.start_acquisition)),
            ("ACQuire:STATe", Q, _nullary(lambda: c.state.value.encode())),
            ("FETCh:FRAMes", Q, self._q_frames),
            ("FETCh:COUNt", Q, _nullary(lambda: str(c.frames_ready).encode())),
            ("STATus:LASer", Q, _nullary(lambda: b"1" if c.laser_on else b"0")),
            ("LASer:STATe", S, lambda cmd: c.set_laser(_one(cmd, to_bool, "laser state"))),
            ("LASer:STATe", Q, _nullary(lambda: b"1" if c.laser_on else b"0")),
            ("STATus:TEMPerature", Q, _nullary(lambda: format_float(c.temperature_c).encode())),
            ("STATus:FRAMes", Q, _nullary(lambda: str(c.bench.clock.frames).encode())),
            ("STATus:TIME", Q, _nullary(lambda: format_float(c.bench.clock.device_time_s).encode())),
            ("SIM:SEED", S, lambda cmd: c.set_seed(_one(cmd, to_int, "seed"))),
            ("SIM:SEED", Q, _nullary(lambda: str(c.seed).encode())),
            ("SIM:NOISe", S, lambda cmd: c.set_noise(_one(cmd, to_bool, "noise"))),
            ("SIM:NOISe", Q, _nullary(lambda: b"1" if c.noise else b"0")),
            ("SIM:IDLE", S, lambda cmd: c.idle(_one(cmd, to_float, "idle time"))),
            ("SIM:CLOCk", S, self._c_clock),
            ("SIM:CLOCk", Q, _nullary(lambda: f"{c.bench.clock.frames},"
                                      f"{format_float(c.bench.clock.device_time_s)}".encode())),
            ("SIM:CONFig", S, self._c_config),
            ("SIM:CONFig", Q, _nullary(lambda: BlockOut(c.config.model_dump_json().encode()))),
            ("SIM:FAULt", S, self._c_fault),
            ("SIM:FAULt", Q, _nullary(lambda: (",".join(sorted(c.pending_faults)) or "NONE").encode())),
        ]
        rows = [Row(HeaderPattern(h), q, fn) for h, q, fn in table]
        for setting in SETTINGS:
            rows.append(Row(HeaderPattern(setting.header), S, self._setter(setting), True))
            rows.append(Row(HeaderPattern(setting.header), Q, self._getter(setting), True))
        return rows

    # ------------------------------------------------------------------ handlers
    def _setter(self, setting: Setting) -> Handler:
        name = setting.name
        if setting.kind == "roi":
            def convert(cmd: Command) -> Any:
                expect_args(cmd, len(setting.fields))
                return {k: to_int(a, f"{name}.{k}") for k, a in zip(setting.fields, cmd.args, strict=True)}
        else:
            to_value = to_float if setting.kind == "float" else to_int

            def convert(cmd: Command) -> Any:
                return _one(cmd, to_value, name)

        def run(cmd: Command) -> None:
            self.core.stage(name, convert(cmd))

        return run

    def _getter(self, setting: Setting) -> Handler:
        def run(cmd: Command) -> bytes:
            expect_args(cmd, 0)
            return setting.format(self.core.setting(setting.name)).encode()

        return run

    def _q_esr(self, cmd: Command) -> bytes:
        expect_args(cmd, 0)
        return str(self.core.errors.read_esr()).encode()

    def _q_error(self, cmd: Command) -> bytes:
        expect_args(cmd, 0)
        code, message = self.core.next_error()
        return f"{code},{quote(message)}".encode()

    def _q_frames(self, cmd: Command) -> BlockOut:
        expect_args(cmd, 0, 2)
        if len(cmd.args) == 1:
            raise ScpiError(-109, "Missing parameter; FETC:FRAM? takes no parameter or <start>,<count>")
        start, count = (0, None) if not cmd.args else (to_int(cmd.args[0], "start"),
                                                         to_int(cmd.args[1], "count"))
        return BlockOut(memoryview(self.core.frame_view(start, count)).cast("B"))

    def _c_config(self, cmd: Command) -> None:
        data = _one(cmd, to_block, "SIM:CONF")
        try:
            cfg = opu.OPUConfig.model_validate_json(bytes(data))
        except pydantic.ValidationError as exc:
            errs = exc.errors()
            first = errs[0]
            loc = ".".join(str(x) for x in first.get("loc", ())) or "config"
            more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
            raise FirmwareError(-222, f"invalid OPUConfig JSON: {loc}: {first.get('msg', '')}{more}"[:300]) \
                from None
        self.core.load_config(cfg)

    def _c_clock(self, cmd: Command) -> None:
        expect_args(cmd, 2)
        self.core.set_clock(to_int(cmd.args[0], "frame counter"), to_float(cmd.args[1], "device time"))

    def _c_fault(self, cmd: Command) -> None:
        expect_args(cmd, 1, 2)
        kind = to_choice(cmd.args[0], "fault kind", FAULT_KINDS)
        arg: float | int | None = None
        if len(cmd.args) == 2:
            arg = to_int(cmd.args[1], "error code") if kind == "ERROR" else to_float(cmd.args[1], "argument")
        self.core.inject_fault(kind, arg)


def assemble(parts: list[Any]) -> tuple[list[bytes | memoryview], tuple[int, int, int] | None]:
    """The response chunks for the query answers ``parts`` (joined by ``;``, ending with ``\\n``),
    and where the first block sits: (chunk index of its header, header length, payload length)."""
    chunks: list[bytes | memoryview] = []
    block_at: tuple[int, int, int] | None = None
    for i, p in enumerate(parts):
        if i:
            chunks.append(b";")
        if isinstance(p, BlockOut):
            hdr = block_header(len(p.payload))
            if block_at is None:
                block_at = (len(chunks), len(hdr), len(p.payload))
            chunks.append(hdr)
            chunks.append(p.payload)
        else:
            chunks.append(p)
    chunks.append(b"\n")
    return chunks, block_at


def _nullary(fn: Callable[[], Any]) -> Handler:
    """Handler of a parameterless command: refuse parameters (-108) before doing anything."""

    def run(cmd: Command) -> Any:
        if cmd.args:
            raise ScpiError(-108, f"Parameter not allowed; {cmd.header} takes no parameter")
        return fn()

    return run


def _one(cmd: Command, conv: Callable[[Any, str], Any], what: str) -> Any:
    expect_args(cmd, 1)
    return conv(cmd.args[0], what)
