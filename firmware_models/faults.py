"""Injected faults (``SIM:FAULt``): which are armed, and how they shape the next response.

SATURATE acts in the device core (:meth:`FaultPlan.take`), ERROR queues its code at once; the
transport faults DROP, DELAY, TRUNCATE and CORRUPT only exist on the wire, so they are applied to
the assembled response bytes here (:meth:`FaultPlan.shape`) and nowhere else. The kinds are
declared in :data:`firmware_models.protocol.FAULTS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import ERROR_TEXT, FirmwareError, float_in, int_in
from .protocol import FAULT_BY_NAME, FAULT_KINDS, MAX_DELAY_MS, short_form
from .status import ErrorQueue


@dataclass(frozen=True)
class Reply:
    """What a transport sends back for one program message.

    ``data``: response bytes with the final ``\\n`` (None: nothing to send); ``delay_s``: wait
    before sending (SIM:FAULt DELay); ``close_after``: close the connection after sending
    ``data`` (SIM:FAULt DROP: ``data`` then stops in the middle of a block).
    """

    data: bytes | None
    delay_s: float = 0.0
    close_after: bool = False


class FaultPlan:
    """The armed faults: kind name -> argument (DELAY: seconds; others: True). Each fires once."""

    def __init__(self) -> None:
        self._armed: dict[str, Any] = {}

    def arm(self, kind: str, arg: float | int | None, errors: ErrorQueue) -> None:
        """``SIM:FAULt kind[,arg]``: arm a fault, disarm all (CLEAR) or queue an error (ERROR)."""
        if not isinstance(kind, str) or kind.upper() not in FAULT_KINDS:
            raise FirmwareError(-224, f"fault kind must be one of {', '.join(sorted(FAULT_BY_NAME))}, "
                                f"got {kind!r}")
        k = FAULT_KINDS[kind.upper()]
        fault = FAULT_BY_NAME[k]
        if fault.arg and arg is None:
            what = "the delay in ms" if fault.arg == "ms" else "an error code"
            raise FirmwareError(-109, f"SIM:FAUL {short_form(fault.word)} needs {what}")
        if not fault.arg and arg is not None and k != "CLEAR":
            raise FirmwareError(-108, f"SIM:FAUL {k} takes no argument")
        if k == "CLEAR":
            self._armed.clear()
        elif k == "DELAY":
            self._armed[k] = float_in(arg, "delay", 0.0, MAX_DELAY_MS, "ms") / 1e3
        elif k == "ERROR":
            code = int_in(arg, "error code", -32768, 32767)
            if code == 0:
                raise FirmwareError(-222, "error code 0 means 'no error'; inject a non-zero code")
            errors.push(code, f"{ERROR_TEXT.get(code, 'Device error')}; injected by SIM:FAULt")
        else:
            self._armed[k] = True

    def take(self, name: str) -> Any:
        """Disarm fault ``name`` and return its argument (None if it was not armed)."""
        return self._armed.pop(name, None)

    @property
    def pending(self) -> dict[str, Any]:
        return dict(self._armed)

    def clear(self) -> None:
        self._armed.clear()

    def shape(self, chunks: list[bytes | memoryview], block_at: tuple[int, int, int] | None) -> Reply:
        """The reply for a response made of ``chunks`` (ending with ``\\n``), with the transport faults.

        ``block_at``: (index of the first block's header in ``chunks``, header length, payload
        length), None when the response carries no block (only DELAY applies then).
        """
        delay = self._armed.pop("DELAY", 0.0)
        if block_at is not None:
            idx, hlen, plen = block_at
            if self._armed.pop("TRUNCATE", None):
                hdr = bytes(chunks[idx])
                return Reply(b"".join([*chunks[:idx], hdr[: 2 + (hlen - 2) // 2], b"\n"]), delay)
            if self._armed.pop("CORRUPT", None):
                chunks[idx] = b"#X" + bytes(chunks[idx])[2:]
            if self._armed.pop("DROP", None):
                head = b"".join(chunks[: idx + 1])
                return Reply(b"".join([head, chunks[idx + 1][: plen // 2]]), delay, close_after=True)
        return Reply(b"".join(chunks), delay)
