"""The error queue and the IEEE 488.2 status registers (``SYST:ERR?``, ``*ESR?``, ``*STB?``).

docs/protocol.md, section 5: a bounded first-in first-out queue of ``(code, message)``; when it is
full the last entry is replaced by -350. Every entry also sets its class's bit in the event status
register.
"""

from __future__ import annotations

from collections import deque

from .errors import ERROR_TEXT

#: entries the error queue holds; one more error replaces the last entry by -350
ERROR_QUEUE_SIZE = 32


class ErrorQueue:
    """The device's error queue, event status register (``esr``) and status byte (:attr:`stb`)."""

    def __init__(self, size: int = ERROR_QUEUE_SIZE) -> None:
        self.size = size
        self._entries: deque[tuple[int, str]] = deque()
        self.esr = 0

    def push(self, code: int, message: str) -> None:
        if len(self._entries) >= self.size:
            self._entries[-1] = (-350, ERROR_TEXT[-350])
        else:
            self._entries.append((int(code), message))
        # event status register: command / execution / device-dependent / query error bits
        if -199 <= code <= -100:
            self.esr |= 32
        elif -299 <= code <= -200:
            self.esr |= 16
        elif -499 <= code <= -400:
            self.esr |= 4
        else:
            self.esr |= 8

    def next(self) -> tuple[int, str]:
        """Oldest entry, removed; ``(0, "No error")`` when empty."""
        return self._entries.popleft() if self._entries else (0, "No error")

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """``*CLS``: the queue and the event status register."""
        self._entries.clear()
        self.esr = 0

    def operation_complete(self) -> None:
        """``*OPC``: bit 0 of the event status register."""
        self.esr |= 1

    def read_esr(self) -> int:
        """``*ESR?``: the register, then cleared."""
        v, self.esr = self.esr, 0
        return v

    @property
    def stb(self) -> int:
        """``*STB?``: bit 2 queue not empty, bit 5 event status register non-zero."""
        return (4 if self._entries else 0) | (32 if self.esr else 0)
