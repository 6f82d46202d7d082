"""The OPU as a VISA instrument: SCPI over pyvisa (``@py`` backend by default), docs/protocol.md.

    >>> dev = VisaDevice("TCPIP::127.0.0.1::5025::SOCKET", timeout_s=5).open()   # doctest: +SKIP

Error handling, in the habits of PyMeasure/QCoDeS:

* after every set command the driver reads ``SYST:ERR?`` and raises :class:`DeviceError` with the
  device's ``code,"message"`` and the command (PyMeasure's ``check_set_errors``);
* a reply that does not arrive within ``timeout_s`` raises :class:`DeviceTimeout`; idempotent queries
  (``...?``, frame fetch) are sent once more first, never commands that change state (``ACQ:STAR``).
  The reply owed for a timed-out request is read and discarded before the next reply, so a late
  answer can never be mistaken for the answer to a later request;
* a connection reset/closed by the device raises :class:`DeviceDisconnected` and closes the resource;
* a malformed block (bad header, wrong length, missing terminator) raises :class:`ProtocolError`
  after discarding the rest of the reply, so the connection stays usable;
* a ``!BUSY`` greeting (another client holds the device) raises :class:`DeviceBusy`.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from firmware_models.protocol import SETTINGS

from .base import Device, DeviceIdentity, DeviceSettings, DeviceStatus, settings_changes
from .errors import (
    DeviceBusy,
    DeviceDisconnected,
    DeviceTimeout,
    DriverError,
    ProtocolError,
)
from .registry import backend
from .scpi import check_error_queue, scpi_set_command
from .wire import EmptyReply, SocketWire, VisaWire, Wire

#: frames fetched per FETC:FRAM? block at most (bounds the host's receive buffer per request)
MAX_FETCH_BYTES = 256 << 20
#: the default VISA backend: pyvisa-py, pure Python, handles raw TCP SOCKET resources
DEFAULT_BACKEND = "@py"


def _ieee_block(payload: bytes | memoryview) -> bytes:
    n = len(payload)
    digits = str(n)
    return b"#" + str(len(digits)).encode() + digits.encode() + bytes(payload)


class VisaDevice(Device):
    """An OPU reached through a VISA resource (real hardware or ``opu serve``).

    Parameters
    ----------
    resource:
        VISA resource string, e.g. ``"TCPIP::127.0.0.1::5025::SOCKET"``.
    timeout_s:
        Longest silence accepted while waiting for a reply, in seconds (converted to pyvisa's
        milliseconds at the boundary).
    backend:
        pyvisa backend spec for :class:`pyvisa.ResourceManager` (``"@py"``; ``""`` lets pyvisa
        choose, e.g. NI-VISA).
    fast_io:
        Use the socket of a pyvisa-py SOCKET session directly for the bulk transfers
        (:mod:`drivers.wire`); False forces pyvisa's message-based API throughout.
    resource_manager:
        An existing :class:`pyvisa.ResourceManager` to open the resource with (else one is made).
    wire_factory:
        ``wire_factory(resource, timeout_s) -> Wire`` replaces pyvisa altogether: the driver talks
        through the :class:`~drivers.wire.Wire` it returns (a scripted transport in the
        recorded-exchange tests, tests/drivers/test_drv_recorded.py).
    """

    def __init__(self, resource: str, *, timeout_s: float = 10.0, backend: str = DEFAULT_BACKEND,
                 fast_io: bool = True, resource_manager: Any = None,
                 wire_factory: Callable[[str, float], Wire] | None = None) -> None:
        super().__init__(resource)
        if not (timeout_s > 0 and np.isfinite(timeout_s)):
            raise DriverError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}",
                              resource=resource)
        self.timeout_s = float(timeout_s)
        self.backend = backend
        self.fast_io = fast_io
        self._rm = resource_manager
        self._wire_factory = wire_factory
        self._res: Any = None
        self._wire: Wire | None = None
        self._owed = 0  # replies the device still owes for requests that timed out
        self._identity: DeviceIdentity | None = None
        self._memory = 0
        #: number of query retries after a timeout (diagnostics)
        self.retries = 0

    # ------------------------------------------------------------------ connection
    @property
    def uses_fast_io(self) -> bool:
        """True when bulk transfers go straight to the pyvisa-py session's socket."""
        return isinstance(self._wire, SocketWire)

    def _open(self) -> None:
        if self._wire_factory is not None:
            self._wire = self._wire_factory(self.resource, self.timeout_s)
        else:
            self._open_resource()
        self._owed = 0
        try:
            self._identity = self._parse_identity(self._query("*IDN?"))
            self._memory = int(self._query("SEQ:MAX?"))
        except DeviceDisconnected as exc:
            self._release()
            raise DeviceDisconnected(f"could not open the resource: {exc}", resource=self.resource) from None
        except BaseException:
            self._release()
            raise

    def _open_resource(self) -> None:
        import pyvisa

        try:
            if self._rm is None:
                self._rm = pyvisa.ResourceManager(self.backend)
            self._res = self._rm.open_resource(
                self.resource, read_termination="\n", write_termination="\n",
                timeout=self.timeout_s * 1000.0)  # pyvisa counts milliseconds
        except (pyvisa.errors.VisaIOError, OSError, ValueError) as exc:
            self._release()
            raise DeviceDisconnected(f"could not open the resource: {exc}",
                                     resource=self.resource) from exc
        wire = SocketWire.attach(self._res, self.resource, self.timeout_s) if self.fast_io else None
        self._wire = wire or VisaWire(self._res, self.resource, self.timeout_s)

    def _close(self) -> None:
        self._release()

    def _release(self) -> None:
        """Close our resource; never raises. The ResourceManager stays open: pyvisa shares one
        instance per backend in a process, and closing it would close every other client's
        resources too."""
        if self._wire is not None:
            self._wire.close()
        self._wire = None
        if self._res is not None:
            with contextlib.suppress(Exception):  # the connection may already be gone
                self._res.close()
        self._res = None

    def _lost(self, exc: DeviceDisconnected) -> DeviceDisconnected:
        """The connection dropped: close our side cleanly and mark the device closed."""
        self._is_open = False
        self._projectors.clear()
        self._release()
        return exc

    # ------------------------------------------------------------------ message layer
    def _io(self) -> Wire:
        if self._wire is None:
            raise DriverError("the device is not open: call open() or use it as a context manager",
                              resource=self.resource)
        return self._wire

    def _send(self, data: bytes) -> None:
        try:
            self._io().send(data)
        except DeviceDisconnected as exc:
            raise self._lost(exc) from None

    def _settle(self) -> None:
        """Read and drop the replies still owed for requests that timed out earlier."""
        while self._owed:
            self._guarded(self._io().skip_reply)
            self._owed -= 1

    def _guarded(self, read, *args):
        try:
            return read(*args)
        except DeviceDisconnected as exc:
            raise self._lost(exc) from None
        except ProtocolError:
            self._io().flush_input()
            raise

    def _read_text(self) -> str:
        raw = self._guarded(self._io().read_line)
        text = raw.decode("ascii", errors="replace").strip()
        if text.startswith("!BUSY"):
            self._release()
            self._is_open = False
            raise DeviceBusy(f"the device is in use by another client ({text[5:].lstrip(',')})",
                             resource=self.resource)
        return text

    def _query(self, command: str, *, idempotent: bool = True, check: bool = True) -> str:
        """Send ``command`` (a query) and return its text reply (terminator stripped).

        The device answers a failed query with an empty line: ``check`` then raises its error.
        """
        self._settle()
        for attempt in (0, 1):
            self._send(command.encode("ascii") + b"\n")
            try:
                text = self._read_text()
                if check and not text:
                    self._check_errors(command)
                    raise ProtocolError(f"empty reply to {command!r} and no error queued",
                                        resource=self.resource)
                return text
            except DeviceTimeout:
                self._owed += 1
                if attempt or not idempotent:
                    raise
                # resend; the first reply to arrive answers it and the other stays owed
                self.retries += 1
        raise AssertionError("unreachable")

    def _query_block_into(self, command: str, out: np.ndarray) -> np.ndarray:
        """Send a query answered by one definite block and read it into ``out`` (exact size)."""
        self._settle()
        wire = self._io()
        for attempt in (0, 1):
            self._send(command.encode("ascii") + b"\n")
            before = wire_bytes(wire)
            try:
                return self._guarded(wire.read_block_into, out)
            except EmptyReply:
                self._check_errors(command)
                raise
            except DeviceTimeout:
                if wire_bytes(wire) != before:  # stalled inside the block: cannot resynchronise
                    wire.flush_input()
                    raise
                self._owed += 1
                if attempt:
                    raise
                self.retries += 1
        raise AssertionError("unreachable")

    def _next_error(self) -> tuple[int, str]:
        return _parse_error(self._query("SYST:ERR?", check=False), self.resource)

    def _check_errors(self, command: str) -> None:
        check_error_queue(self._next_error, command, self.resource)

    def _command(self, command: str, *, check: bool = True) -> None:
        """Send a set command, then (``check``) raise the device's error for it, if any."""
        self._settle()
        self._send(command.encode("ascii") + b"\n")
        if check:
            self._check_errors(command)

    def write(self, command: str) -> None:
        """Send a raw SCPI command and check the error queue (for commands the driver lacks)."""
        self._require_open()
        self._command(command)

    def query(self, command: str) -> str:
        """Send a raw SCPI query and return its text reply."""
        self._require_open()
        return self._query(command, idempotent=False)

    # ------------------------------------------------------------------ Device primitives
    @staticmethod
    def _parse_identity(text: str) -> DeviceIdentity:
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 4:
            raise ProtocolError(f"*IDN? reply {text!r} does not have 4 comma-separated fields")
        return DeviceIdentity(*parts)

    def _query_identity(self) -> DeviceIdentity:
        assert self._identity is not None
        return self._identity

    def _pattern_memory(self) -> int:
        return self._memory

    def _read_settings(self) -> DeviceSettings:
        values = {}
        for setting in SETTINGS:  # one query per setting, in the protocol table's order
            command = f"{setting.short}?"
            text = self._query(command)
            try:
                values[setting.name] = setting.parse(text)
            except ValueError:
                raise ProtocolError(f"{command} reply {text!r} is not {_REPLY_FORMS[setting.kind]}",
                                    resource=self.resource) from None
        return DeviceSettings.model_validate(values)

    def _write_settings(self, settings: DeviceSettings) -> None:
        for name, value in settings_changes(self.settings, settings):
            self._command(scpi_set_command(name, value))

    def _run_sequence(self, packed: np.ndarray) -> np.ndarray:
        b = packed.shape[0]
        self._settle()
        self._send(b"SEQ:DATA " + _ieee_block(memoryview(np.ascontiguousarray(packed)).cast("B"))
                   + b"\n")
        self._check_errors("SEQ:DATA")
        self._command("ACQ:STAR")
        return self.fetch_frames(0, b)

    def fetch_frames(self, start: int = 0, count: int | None = None) -> np.ndarray:
        """Frames ``start .. start+count`` of the device's frame buffer: (count, m) uint8/uint16.

        Re-reading the buffer is idempotent (retried once on timeout). Large requests are split
        into blocks of at most :data:`MAX_FETCH_BYTES`.
        """
        self._require_open()
        if count is None:
            count = int(self._query("FETC:COUN?")) - start
        s = self.settings
        dtype = s.frame_dtype.newbyteorder("<")
        out = np.empty((count, s.n_outputs), dtype=dtype)
        step = max(1, MAX_FETCH_BYTES // max(1, out.itemsize * s.n_outputs))
        for lo in range(0, count, step):
            hi = min(lo + step, count)
            self._query_block_into(f"FETC:FRAM? {start + lo},{hi - lo}", out[lo:hi])
        return out if dtype.isnative else out.astype(s.frame_dtype)

    def _query_status(self) -> DeviceStatus:
        return DeviceStatus(
            laser_on=_bool(self._query("STAT:LAS?")),
            temperature_c=float(self._query("STAT:TEMP?")),
            frames_total=int(self._query("STAT:FRAM?")),
            device_time_s=float(self._query("STAT:TIME?")),
        )

    def _wait(self, seconds: float) -> None:
        if self.identity.is_simulated:
            self._command(f"SIM:IDLE {seconds!r}")
        else:
            time.sleep(seconds)

    def _sim(self, name: str, value: str) -> None:
        # an injected error surfaces at the next checked command, and a delay hits the next reply:
        # reading the error queue right away would consume either
        self._command(f"SIM:{name} {value}",
                      check=not (name == "FAUL" and value.startswith(("ERROR", "DELAY"))))

    def _sim_config_json(self) -> str:
        self._settle()
        self._send(b"SIM:CONF?\n")
        return self._guarded(self._io().read_block).decode("utf-8")

    def _sim_load_config_json(self, text: str) -> None:
        self._settle()
        self._send(b"SIM:CONF " + _ieee_block(text.encode("utf-8")) + b"\n")
        self._check_errors("SIM:CONF")


def wire_bytes(wire: Wire) -> int:
    """A cheap fingerprint of how much input the wire has consumed or buffered."""
    return getattr(wire, "received", 0) + len(getattr(wire, "_buf", b""))


_REPLY_FORMS = {"float": "a decimal number", "int": "a decimal integer", "roi": "4 comma-separated integers"}


def _parse_error(text: str, resource: str) -> tuple[int, str]:
    code, _, message = text.partition(",")
    try:
        value = int(code)
    except ValueError:
        raise ProtocolError(f"SYST:ERR? reply {text!r} is not 'code,\"message\"'",
                            resource=resource) from None
    message = message.strip()
    if len(message) >= 2 and message[0] == message[-1] == '"':
        message = message[1:-1].replace('""', '"')
    return value, message


def _bool(text: str) -> bool:
    return text.strip().upper() in ("1", "ON", "TRUE")


#: VISA resource strings (interface prefixes of the VISA resource-name grammar)
VISA_RESOURCE = r"^(TCPIP\d*|ASRL|GPIB\d*|USB\d*|VXI\d*|PXI\d*)(::|\d|/)"


@backend("visa", pattern=re.compile(VISA_RESOURCE, re.IGNORECASE),
         options=("timeout_s", "backend", "fast_io", "resource_manager"), forms=[
    ("TCPIP::host::port::SOCKET", "instrument or emulator over a raw TCP socket (pyvisa)"),
    ("TCPIP::host::INSTR, ASRL..., GPIB..., USB...", "any other VISA resource string (pyvisa)"),
])
def open_visa_uri(uri: str, **options: Any) -> VisaDevice:
    """The :class:`VisaDevice` for a VISA resource string (unopened)."""
    return VisaDevice(uri, **options)


__all__ = ["DEFAULT_BACKEND", "VISA_RESOURCE", "VisaDevice", "open_visa_uri", "scpi_set_command"]
