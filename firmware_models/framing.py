"""IEEE 488.2 definite-length blocks and the message framing of the instrument's TCP stream.

Wire rules (docs/protocol.md): a program message is one line ended by ``\\n``; an argument may be a
definite-length block ``#<n><len><payload>`` whose payload is exactly ``len`` bytes, ``\\n`` bytes
inside included. Indefinite blocks (``#0``) are never produced and refused on input.

:class:`MessageReader` cuts a byte stream into complete program messages with bounded memory:
non-block text is limited to :data:`MAX_LINE_BYTES`, a block payload to ``max_block_bytes`` (the
payload of a larger block is read and thrown away so the stream stays in step).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

#: longest non-block part of one program message, bytes
MAX_LINE_BYTES = 64 * 2**10
#: absolute cap of one block payload, bytes (the controller applies its pattern-memory limit too)
MAX_BLOCK_BYTES = 256 * 2**20

_SPECIAL = re.compile(rb'[\n#"]')


class BlockError(ValueError):
    """A malformed or truncated IEEE 488.2 block. ``code`` is the SCPI error code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def block_header(n_bytes: int) -> bytes:
    """``#<n><len>`` for a payload of ``n_bytes`` (never ``#0``)."""
    if n_bytes < 0:
        raise ValueError(f"block length must be >= 0, got {n_bytes}")
    digits = str(n_bytes).encode("ascii")
    if len(digits) > 9:
        raise ValueError(f"block of {n_bytes} bytes is too long for a definite-length header")
    return b"#" + str(len(digits)).encode("ascii") + digits


def encode_block(payload: bytes | bytearray | memoryview) -> bytes:
    """``#<n><len><payload>`` (no terminator); one copy of the payload."""
    return b"".join((block_header(len(memoryview(payload).cast("B"))), payload))


def parse_block(data: bytes | bytearray | memoryview, pos: int = 0) -> tuple[memoryview, int]:
    """Parse a block starting at ``data[pos] == '#'``: returns (payload view, index after it).

    Raises :class:`BlockError` (-161 invalid header, -160 truncated payload or ``#0``).
    """
    mv = memoryview(data).cast("B")
    if pos >= len(mv) or mv[pos] != ord("#"):
        raise BlockError(-161, "invalid block data; a block starts with '#'")
    if pos + 1 >= len(mv):
        raise BlockError(-161, "invalid block data; header ends after '#'")
    nd = mv[pos + 1]
    if nd == ord("0"):
        raise BlockError(-160, "block data error; indefinite-length blocks (#0) are not supported")
    if not ord("1") <= nd <= ord("9"):
        raise BlockError(-161, "invalid block data; '#' must be followed by a digit 1-9")
    n = nd - ord("0")
    digits = bytes(mv[pos + 2 : pos + 2 + n])
    if len(digits) < n:
        raise BlockError(-160, f"block data error; header truncated ({len(digits)} of {n} length digits)")
    if not digits.isdigit():
        raise BlockError(-161, f"invalid block data; length field {digits!r} is not {n} decimal digits")
    length = int(digits)
    start = pos + 2 + n
    end = start + length
    if end > len(mv):
        raise BlockError(
            -160, f"block data error; block truncated: header announces {length} bytes, "
            f"{len(mv) - start} present"
        )
    return mv[start:end], end


@dataclass(frozen=True)
class FramingError:
    """An input message that could not be framed (oversized, block too large); it was discarded."""

    code: int
    message: str


class MessageReader:
    """Cut a byte stream into complete program messages.

    Parameters
    ----------
    recv_into:
        ``recv_into(buffer) -> n`` (``socket.recv_into``); 0 means end of stream. May raise
        ``TimeoutError``/``OSError`` which propagate to the caller.
    max_block_bytes:
        Payload limit of one block; callable so it may follow the device settings.
    """

    def __init__(
        self,
        recv_into: Callable[[memoryview], int],
        max_block_bytes: Callable[[], int] | int = MAX_BLOCK_BYTES,
        max_line_bytes: int = MAX_LINE_BYTES,
        chunk_bytes: int = 256 * 2**10,
    ) -> None:
        self._recv_into = recv_into
        self._max_block = max_block_bytes if callable(max_block_bytes) else (lambda: max_block_bytes)
        self._max_line = max_line_bytes
        self._chunk = bytearray(chunk_bytes)
        self._buf = bytearray()
        self._eof = False

    def _fill(self) -> bool:
        """Append received bytes to the buffer; False at end of stream."""
        if self._eof:
            return False
        n = self._recv_into(memoryview(self._chunk))
        if n == 0:
            self._eof = True
            return False
        self._buf += memoryview(self._chunk)[:n]
        return True

    def _fill_exact(self, need: int) -> bool:
        """Grow the buffer to at least ``need`` bytes; False if the stream ends first."""
        if len(self._buf) >= need:
            return True
        if need - len(self._buf) > len(self._chunk):  # big block: receive straight into place
            have = len(self._buf)
            self._buf.extend(bytes(need - have))
            try:
                with memoryview(self._buf) as view:
                    while have < need:
                        n = self._recv_into(view[have:need])
                        if n == 0:
                            self._eof = True
                            break
                        have += n
            finally:
                del self._buf[have:]  # keep only what arrived (no-op when complete)
            return have >= need
        while len(self._buf) < need:
            if not self._fill():
                return False
        return True

    def _discard(self, count: int) -> bool:
        """Drop ``count`` bytes from the stream (after the buffer's content); False on EOF."""
        take = min(count, len(self._buf))
        del self._buf[:take]
        count -= take
        view = memoryview(self._chunk)
        while count > 0:
            n = self._recv_into(view[: min(count, len(view))])
            if n == 0:
                self._eof = True
                return False
            count -= n
        return True

    def read_message(self) -> bytes | FramingError | None:
        """The next complete program message (with its ``\\n``), a :class:`FramingError`, or None.

        None means the stream ended; a partial message at that point is dropped unexecuted.
        """
        pos = 0  # scan position in self._buf
        text = 0  # non-block bytes seen in this message
        in_string = False
        while True:
            m = _SPECIAL.search(self._buf, pos)
            if m is None:
                text += len(self._buf) - pos
                pos = len(self._buf)
                if text > self._max_line:
                    return self._drop_line("program message longer than "
                                           f"{self._max_line} bytes (blocks excluded)")
                if not self._fill():
                    return None
                continue
            i = m.start()
            text += i - pos
            c = self._buf[i]
            if text > self._max_line:
                return self._drop_line(f"program message longer than {self._max_line} bytes")
            if c == 0x0A:  # '\n': end of message (also ends an unterminated string)
                msg = bytes(self._buf[: i + 1])
                del self._buf[: i + 1]
                return msg
            if c == 0x22:  # '"'
                in_string = not in_string
                pos = i + 1
                continue
            # '#': a block header unless inside a string
            if in_string:
                pos = i + 1
                continue
            end = self._block_end(i)
            if end is None:
                return None
            if isinstance(end, FramingError):
                return end
            text += end[1]
            pos = end[0]

    def _block_end(self, i: int) -> tuple[int, int] | FramingError | None:
        """Skip the block at buffer index ``i``: (index after payload, header bytes) or an error."""
        if not self._fill_exact(i + 2):
            return None
        nd = self._buf[i + 1]
        if not 0x31 <= nd <= 0x39:  # not a definite block ('#0' or garbage): let the parser judge it
            return i + 1, 1
        n = nd - 0x30
        if not self._fill_exact(i + 2 + n):
            return None
        digits = bytes(self._buf[i + 2 : i + 2 + n])
        if not digits.isdigit():
            return i + 1, 1
        length = int(digits)
        start = i + 2 + n
        limit = self._max_block()
        if length > limit:
            del self._buf[:start]
            if not self._discard(length):
                return None
            return self._drop_line(
                f"block of {length} bytes exceeds the {limit}-byte limit; payload discarded"
            )
        if not self._fill_exact(start + length):
            return None
        return start + length, 2 + n

    def _drop_line(self, why: str) -> FramingError | None:
        """Discard input up to the next ``\\n`` (not counting block payloads: it is garbage)."""
        while True:
            k = self._buf.find(b"\n")
            if k >= 0:
                del self._buf[: k + 1]
                return FramingError(-223, f"Too much data; {why}")
            self._buf.clear()
            if not self._fill():
                return None
