"""SCPI program-message parsing: headers with long/short forms, typed arguments, IEEE blocks.

A program message is one line: commands separated by ``;``, each ``HEADER[?] [arg{,arg}]``.
Every command's header is absolute (a leading ``:`` is optional); docs/protocol.md states this
simplification of SCPI's relative-path rule. Nothing here evaluates input (no eval, no pickle).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

from .framing import BlockError, parse_block


class ScpiError(Exception):
    """A parse or argument error; ``code`` is the SCPI error code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}, {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Block:
    """An IEEE 488.2 definite-length block argument (payload view into the message)."""

    data: memoryview

    def __len__(self) -> int:
        return len(self.data)


Arg = str | Block


@dataclass(frozen=True)
class Command:
    """One parsed command: upper-cased header nodes (no ``?``), query flag, arguments."""

    header: str
    nodes: tuple[str, ...]
    query: bool
    args: tuple[Arg, ...]


_HEADER = re.compile(r"^:?(\*[A-Z]+|[A-Z][A-Z0-9_]*(?::[A-Z][A-Z0-9_]*)*)(\?)?$")
_WS = b" \t\r\n"  # a "\n" outside blocks ends a command like ";"
_END = b";\n"


def _decode(raw: bytes | memoryview, what: str) -> str:
    try:
        return bytes(raw).decode("ascii")
    except UnicodeDecodeError:
        raise ScpiError(-102, f"Syntax error; non-ASCII byte in {what}") from None


def parse_message(message: bytes | bytearray | memoryview) -> Iterator[Command]:
    """Yield the commands of one program message in order; raise :class:`ScpiError` at the first bad one.

    Commands before a bad one are yielded (and executed by the caller) first, as SCPI requires.
    """
    mv = memoryview(message).cast("B")
    end = len(mv)
    pos = 0
    while True:
        while pos < end and mv[pos] in _WS:
            pos += 1
        if pos >= end:
            return
        start = pos
        while pos < end and mv[pos] not in b" \t\r\n;":
            pos += 1
        raw_header = _decode(mv[start:pos], "header")
        hm = _HEADER.match(raw_header.upper())
        if hm is None:
            shown = raw_header if len(raw_header) <= 40 else raw_header[:40] + "..."
            raise ScpiError(-102, f"Syntax error; invalid header {shown!r}")
        nodes = tuple(hm.group(1).split(":"))
        query = hm.group(2) is not None
        args: list[Arg] = []
        while pos < end and mv[pos] in b" \t\r":
            pos += 1
        if pos < end and mv[pos] not in _END:
            while True:
                while pos < end and mv[pos] in b" \t\r":
                    pos += 1
                if pos >= end or mv[pos] in b",;\n":
                    raise ScpiError(-102, f"Syntax error; empty parameter after {raw_header}")
                c = mv[pos]
                if c == ord("#"):
                    try:
                        payload, pos = parse_block(mv, pos)
                    except BlockError as exc:
                        raise ScpiError(exc.code, exc.message) from None
                    args.append(Block(payload))
                elif c in (ord('"'), ord("'")):
                    text, pos = _quoted(mv, pos, end)
                    args.append(text)
                else:
                    tok_start = pos
                    while pos < end and mv[pos] not in b",;\n":
                        pos += 1
                    args.append(_decode(mv[tok_start:pos], "parameter").strip(" \t\r"))
                while pos < end and mv[pos] in b" \t\r":
                    pos += 1
                if pos < end and mv[pos] == ord(","):
                    pos += 1
                    continue
                if pos >= end or mv[pos] in _END:
                    break
                raise ScpiError(-102, f"Syntax error; unexpected character {chr(mv[pos])!r} "
                                f"after a parameter of {raw_header}")
        yield Command(raw_header, nodes, query, tuple(args))
        if pos < end and mv[pos] in _END:
            pos += 1


def _quoted(mv: memoryview, pos: int, end: int) -> tuple[str, int]:
    quote = mv[pos]
    out = bytearray()
    pos += 1
    while pos < end:
        c = mv[pos]
        if c == quote:
            if pos + 1 < end and mv[pos + 1] == quote:  # doubled quote = one literal quote
                out.append(c)
                pos += 2
                continue
            return _decode(out, "string"), pos + 1
        out.append(c)
        pos += 1
    raise ScpiError(-102, "Syntax error; string parameter not terminated")


# ---------------------------------------------------------------------------- header patterns
@dataclass(frozen=True)
class _Node:
    short: str
    long: str
    optional: bool


class HeaderPattern:
    """A header like ``SYSTem:ERRor[:NEXT]``: upper-case part = short form, ``[...]`` optional node."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        nodes = []
        for part in re.findall(r"\[:?[^\]]+\]|[^:\[\]]+", spec):
            optional = part.startswith("[")
            word = part.strip("[]:")
            short = "".join(ch for ch in word if ch.isupper() or ch.isdigit() or ch == "*")
            nodes.append(_Node(short, word.upper(), optional))
        self.nodes = tuple(nodes)

    def matches(self, given: tuple[str, ...]) -> bool:
        return _match(self.nodes, given)


def _match(nodes: tuple[_Node, ...], given: tuple[str, ...]) -> bool:
    if not nodes:
        return not given
    head, rest = nodes[0], nodes[1:]
    if given and given[0] in (head.short, head.long) and _match(rest, given[1:]):
        return True
    return head.optional and _match(rest, given)


# ---------------------------------------------------------------------------- argument types
def expect_args(cmd: Command, low: int, high: int | None = None) -> None:
    """Raise -109 (missing) / -108 (too many) unless ``low <= len(args) <= high``."""
    high = low if high is None else high
    n = len(cmd.args)
    if n < low:
        raise ScpiError(-109, f"Missing parameter; {cmd.header} needs {low} parameter(s), got {n}")
    if n > high:
        raise ScpiError(-108, f"Parameter not allowed; {cmd.header} takes at most {high} "
                        f"parameter(s), got {n}")


def _text(arg: Arg, what: str) -> str:
    if isinstance(arg, Block):
        raise ScpiError(-168, f"Block data not allowed; {what} must be a number or word")
    return arg


_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def to_int(arg: Arg, what: str) -> int:
    """A decimal integer (NR1); anything else is -104."""
    s = _text(arg, what)
    if not _INT.match(s) or len(s) > 32:
        raise ScpiError(-104, f"Data type error; {what} must be an integer, got {s[:40]!r}")
    return int(s)


def to_float(arg: Arg, what: str) -> float:
    """A finite decimal number (NR1/NR2/NR3); anything else is -104."""
    s = _text(arg, what)
    if not _FLOAT.match(s) or len(s) > 64:
        raise ScpiError(-104, f"Data type error; {what} must be a number, got {s[:40]!r}")
    v = float(s)
    if not math.isfinite(v):
        raise ScpiError(-222, f"Data out of range; {what} must be finite, got {s[:40]!r}")
    return v


def to_bool(arg: Arg, what: str) -> bool:
    """``ON|OFF|1|0`` (case-insensitive)."""
    s = _text(arg, what).upper()
    if s in ("ON", "1"):
        return True
    if s in ("OFF", "0"):
        return False
    raise ScpiError(-104, f"Data type error; {what} must be ON, OFF, 1 or 0, got {s[:40]!r}")


def to_choice(arg: Arg, what: str, choices: dict[str, str]) -> str:
    """A character parameter: ``choices`` maps each accepted form (upper case) to its canonical name."""
    s = _text(arg, what).upper()
    if s not in choices:
        allowed = ", ".join(sorted(set(choices.values())))
        raise ScpiError(-224, f"Illegal parameter value; {what} must be one of {allowed}, got {s[:40]!r}")
    return choices[s]


def to_block(arg: Arg, what: str) -> memoryview:
    if not isinstance(arg, Block):
        raise ScpiError(-104, f"Data type error; {what} must be an IEEE 488.2 block #<n><len><bytes>")
    return arg.data


def format_float(v: float) -> str:
    """Shortest text that reads back as exactly the same float (Python repr)."""
    return repr(float(v))


def quote(message: str) -> str:
    """A SCPI string ``"..."`` (embedded quotes doubled, control characters removed)."""
    clean = "".join(ch if ch.isprintable() else " " for ch in message)
    return '"' + clean.replace('"', '""') + '"'


def mentions_query(message: bytes | bytearray | memoryview) -> bool:
    """Whether the text of a program message (block payloads skipped) contains a ``?``.

    After an error stops a message, the device still answers one (possibly empty) line when the
    message held a query, so the client waiting for it is not left to time out.
    """
    mv = bytes(memoryview(message).cast("B"))
    pos = 0
    while True:
        q = mv.find(b"?", pos)
        h = mv.find(b"#", pos)
        if q < 0:
            return False
        if h < 0 or q < h:
            return True
        try:
            _, pos = parse_block(mv, h)
        except BlockError:
            pos = h + 1
