"""Property-based tests (hypothesis) of the block framing and the SCPI parser, with hostile input."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import opu
from firmware_models import Controller, FirmwareError
from firmware_models.framing import BlockError, FramingError, MessageReader, encode_block, parse_block
from firmware_models.scpi import ScpiError, parse_message

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _reader(data: bytes, chunk: int, **kw) -> MessageReader:
    """A MessageReader over ``data`` delivered ``chunk`` bytes per recv."""
    pos = 0

    def recv_into(buf: memoryview) -> int:
        nonlocal pos
        n = min(len(buf), chunk, len(data) - pos)
        buf[:n] = data[pos : pos + n]
        pos += n
        return n

    return MessageReader(recv_into, **kw)


@SETTINGS
@given(st.binary(max_size=3000), st.binary(max_size=20))
def test_block_round_trip_for_any_payload(payload, tail):
    blob = encode_block(payload) + tail
    got, end = parse_block(blob)
    assert bytes(got) == payload
    assert blob[end:] == tail
    # the header is the IEEE 488.2 definite form, never #0
    digits = str(len(payload))
    assert blob.startswith(f"#{len(digits)}{digits}".encode())


@SETTINGS
@given(st.binary(min_size=1, max_size=500), st.data())
def test_truncated_blocks_are_detected(payload, data):
    blob = encode_block(payload)
    cut = data.draw(st.integers(0, len(blob) - 1))
    try:
        parse_block(blob[:cut])
    except BlockError as exc:
        assert exc.code in (-160, -161)
    else:
        raise AssertionError(f"truncated block {blob[:cut]!r} was accepted")


@SETTINGS
@given(st.lists(st.binary(max_size=400), min_size=1, max_size=6), st.integers(1, 64))
def test_reader_frames_messages_whatever_the_chunking(payloads, chunk):
    # payloads full of '\n' and '#' must not split messages
    msgs = [b"SEQ:DATA " + encode_block(p) + b"\n" for p in payloads] + [b"*IDN?\n"]
    r = _reader(b"".join(msgs), chunk)
    for m in msgs:
        assert r.read_message() == m
    assert r.read_message() is None


@SETTINGS
@given(st.binary(max_size=600), st.integers(1, 97))
def test_reader_never_raises_and_bounds_lines(data, chunk):
    r = _reader(data, chunk, max_line_bytes=128, max_block_bytes=256)
    total = 0
    for _ in range(len(data) + 2):
        m = r.read_message()
        if m is None:
            break
        if isinstance(m, FramingError):
            assert m.code == -223
            continue
        total += len(m)
        assert m.endswith(b"\n")
    else:
        raise AssertionError("reader did not reach the end of the stream")
    assert total <= len(data)


def test_reader_discards_oversized_line_and_block_and_stays_in_step():
    big_line = b"CAM:EXP " + b"1" * 500 + b"\n"
    big_block = b"SEQ:DATA " + encode_block(b"\n" * 1000) + b"\n"
    r = _reader(big_line + big_block + b"*IDN?\n", 7, max_line_bytes=100, max_block_bytes=999)
    assert isinstance(r.read_message(), FramingError)
    e = r.read_message()
    assert isinstance(e, FramingError) and "1000" in e.message
    assert r.read_message() == b"*IDN?\n"


_WORDS = st.sampled_from([b"*IDN?", b"*RST", b"*CLS", b"CAM:EXP", b"CAM:EXP?", b"DMD:FEAT", b"CAM:ROI",
                          b"SEQ:DATA", b"ACQ:STAR", b"FETC:FRAM?", b"SYST:ERR?", b"SIM:SEED", b"SIM:IDLE",
                          b"SIM:CONF", b"SIM:FAUL", b"LAS:STAT", b"#", b"#9", b"#15ab", b'"', b"'", b";",
                          b",", b" ", b"?", b"\n", b"\r", b"1e400", b"-5", b"64", b"0,0,16,16", b"ON",
                          b"\x00", b"\xff", b":", b"::"])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=200), st.lists(_WORDS, max_size=12).map(b"".join)))
def test_random_bytes_never_raise_out_of_handle_and_leave_the_device_usable(request):
    c = Controller(pattern_memory=16)
    c.set_settings({"n_features": 16, "camera_roi": [0, 0, 4, 4]})
    out = c.handle(request)
    assert out is None or out.endswith(b"\n")
    # errors drain and the device still works
    for _ in range(40):
        if c.next_error()[0] == 0:
            break
    c.reset()
    assert c.handle(b"*IDN?\n").startswith(b"OpenOPU,OPU-1140-SIM,")
    c.set_settings({"n_features": 16, "camera_roi": [0, 0, 4, 4]})
    c.upload_patterns(opu.pack_patterns(np.ones((2, 16), bool)))
    c.start_acquisition()
    assert c.fetch_frames().shape == (2, 16)


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(["CAM:EXP", "cam:gain", "DMD:FEAT", "SEQ:DATA"]),
                          st.lists(st.one_of(st.integers(-10**6, 10**6).map(str),
                                             st.binary(max_size=50)), max_size=3)),
                min_size=1, max_size=4))
def test_parser_recovers_exactly_what_was_written(commands):
    wire = []
    for header, args in commands:
        parts = [encode_block(a) if isinstance(a, bytes) else a.encode() for a in args]
        wire.append(header.encode() + (b" " + b",".join(parts) if parts else b""))
    parsed = list(parse_message(b";".join(wire) + b"\n"))
    assert len(parsed) == len(commands)
    for cmd, (header, args) in zip(parsed, commands, strict=True):
        assert cmd.header == header and not cmd.query
        got = [bytes(a.data) if hasattr(a, "data") else a for a in cmd.args]
        assert got == list(args)


def test_parser_errors_carry_scpi_codes():
    for bad, code in [(b"CAM:EXP 1,,2\n", -102), (b"\xffIDN?\n", -102), (b"A #\n", -161),
                      (b"A #0xyz\n", -160), (b"A #3100abc\n", -160), (b'A "open\n', -102)]:
        try:
            list(parse_message(bad))
        except ScpiError as exc:
            assert exc.code == code, (bad, exc)
        else:
            raise AssertionError(f"{bad!r} parsed")


def test_firmware_error_message_format():
    e = FirmwareError(-222, "exposure_us=0 out of range")
    assert e.code == -222 and e.message == "Data out of range; exposure_us=0 out of range"
