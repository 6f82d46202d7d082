"""Faults injected through the emulator (``SIM:FAULt``) and two clients at once, over real loopback
sockets with pyvisa-py: each fault is reported with its own exception, never as a wrong array, and
the server keeps serving."""

from __future__ import annotations

import time

import numpy as np
import pytest
import pyvisa
from drv_helpers import SETTINGS, open_sim, open_visa, random_patterns

import drivers
from drivers import DeviceBusy, DeviceDisconnected, DeviceError, DeviceTimeout, ProtocolError


def connect_when_free(resource: str, timeout_s: float = 5.0, wait_s: float = 3.0) -> drivers.Device:
    """Connect, retrying while the server still holds the previous (just closed) connection."""
    end = time.monotonic() + wait_s
    while True:
        try:
            return open_visa(resource, timeout_s)
        except DeviceBusy:
            if time.monotonic() > end:
                raise
            time.sleep(0.05)


@pytest.fixture(params=[True, False], ids=["socket", "visawire"])
def fast_io(request):
    """Each fault on both wires: the pyvisa-py socket fast path and pyvisa's message-based API
    (:class:`drivers.wire.VisaWire`, as used for NI-VISA, serial and INSTR resources)."""
    return request.param


@pytest.fixture
def dev(server, fast_io):
    d = open_visa(server.resource, fast_io=fast_io)
    yield d
    d.close()


def _still_serving(resource: str) -> None:
    """A fresh client gets correct frames (compared with the in-process device's)."""
    other = connect_when_free(resource)
    ref = open_sim()
    try:
        for d in (other, ref):
            d.set_seed(3)
        x = random_patterns(20, seed=4)
        np.testing.assert_array_equal(other.acquire(x), ref.acquire(x))
    finally:
        other.close()
        ref.close()


def test_dropped_connection_mid_block(server, fast_io):
    open_sim().acquire(random_patterns(100))  # compile the camera kernel first: the emulator shares it
    dev = open_visa(server.resource, timeout_s=3.0, fast_io=fast_io)
    try:
        dev.acquire(random_patterns(100))
        dev.inject_fault("DROP")
        if fast_io:
            # the socket wire sees the peer's close and counts the bytes it got
            with pytest.raises(DeviceDisconnected, match="closed the connection after"):
                dev.acquire(random_patterns(100))
            assert not dev.is_open  # our side was closed cleanly
            with pytest.raises(drivers.DriverError, match="not open"):
                dev.status()
        else:
            # pyvisa-py's message-based read does not notice the peer's close: it waits out the
            # timeout (twice: the fetch is idempotent, so it is retried). Still a typed error after
            # a bounded wait, never a wrong array (docs/drivers.md, "VisaWire")
            t = time.monotonic()
            with pytest.raises(DeviceTimeout):
                dev.acquire(random_patterns(100))
            assert time.monotonic() - t < 2 * 3.0 + 10.0
    finally:
        dev.close()
    _still_serving(server.resource)


def test_delayed_reply_beyond_the_timeout(server, fast_io):
    # wall-clock margins for a loaded 2-core machine: the reply comes 3 s late, the two attempts
    # give up after 0.5 s; anything below 2.5 s proves the driver did not wait for the reply
    dev = open_visa(server.resource, timeout_s=0.25, fast_io=fast_io)
    try:
        before = dev.settings
        dev.inject_fault("DELAY", 3000)
        t = time.monotonic()
        with pytest.raises(DeviceTimeout):
            dev.status()  # idempotent: sent twice, 2 x 0.25 s, then reported
        assert 0.45 < time.monotonic() - t < 2.5
        assert dev.retries == 1
        time.sleep(max(0.0, t + 4.5 - time.monotonic()))  # the late replies arrive, are discarded in order
        assert dev.is_open
        assert dev._read_settings() == before
        assert dev.identity.is_simulated
    finally:
        dev.close()
    _still_serving(server.resource)


def test_short_delay_is_absorbed_by_one_retry(server, fast_io):
    # the reply comes 1.5 s late: after the first 1 s timeout, 0.5 s before the retry's (wide margins)
    dev = open_visa(server.resource, timeout_s=1.0, fast_io=fast_io)
    try:
        dev.set_seed(3)
        ref = open_sim()
        ref.set_seed(3)
        x = random_patterns(30, seed=8)
        want = ref.acquire(x)
        dev.inject_fault("DELAY", 1500)
        # the delay hits SEQ:DATA's SYST:ERR? check (a query): one retry absorbs it
        np.testing.assert_array_equal(dev.acquire(x), want)
        assert dev.retries == 1
        # replies stay in step afterwards (the owed reply was discarded, not taken for another)
        assert dev.settings == dev._read_settings()
        np.testing.assert_array_equal(dev.fetch_frames(0, 30), want)
    finally:
        dev.close()


def test_state_changing_commands_are_not_retried(server, fast_io):
    # 1.5 s late: 0.5 s after the 1 s timeout, and 0.5 s before the next request's timeout ends
    dev = open_visa(server.resource, timeout_s=1.0, fast_io=fast_io)
    try:
        frames_before = dev.status().frames_total
        dev.inject_fault("DELAY", 1500)
        with pytest.raises(DeviceTimeout):
            dev.query("STAT:FRAM?")  # raw query: not known to be idempotent -> no retry
        assert dev.retries == 0
        assert dev.status().frames_total == frames_before
    finally:
        dev.close()


@pytest.mark.parametrize("fault, match", [("TRUNC", "truncated"), ("CORR", "digit count")])
def test_bad_block_header_is_a_protocol_error(server, dev, fault, match):
    dev.set_seed(3)
    x = random_patterns(50, seed=5)
    dev.inject_fault(fault)
    with pytest.raises(ProtocolError, match=match):
        dev.acquire(x)
    # the rest of the reply was discarded: the same connection keeps working
    assert dev.is_open
    frames = dev.fetch_frames(0, 50)
    ref = open_sim()
    ref.set_seed(3)
    np.testing.assert_array_equal(frames, ref.acquire(x))
    ref.close()


@pytest.mark.parametrize("path", ["sim", "visa", "visawire"])
def test_device_error_codes_surface_alike(request, path):
    dev = open_sim() if path == "sim" else open_visa(request.getfixturevalue("server").resource,
                                                     fast_io=path == "visa")
    try:
        dev.inject_fault("ERR", 299)
        with pytest.raises(DeviceError) as info:
            dev.configure(exposure_us=150.0)
        assert info.value.code == 299 and "injected" in info.value.device_message.lower()
        assert info.value.command == "CAM:EXP 150.0"
        with pytest.raises(DeviceError) as info:  # a state error of the device itself
            dev.fetch_frames(0, 10)
        assert info.value.code == 204  # no frames ready: the settings change dropped them
    finally:
        dev.close()


@pytest.mark.parametrize("path", ["sim", "visa", "visawire"])
def test_saturation_is_a_warning_and_frames_are_returned(request, path):
    dev = open_sim() if path == "sim" else open_visa(request.getfixturevalue("server").resource,
                                                     fast_io=path == "visa")
    try:
        dev.inject_fault("SAT")
        with pytest.warns(drivers.SaturationWarning, match="210"):
            frames = dev.acquire(random_patterns(4))
        assert (frames == 255).mean() > 0.5  # the light was multiplied by 1000
        with pytest.warns(drivers.SaturationWarning):
            dev.inject_fault("SAT")
            dev.linear_transform(np.ones((2, 16)))
    finally:
        dev.close()


def test_second_client_is_refused_and_the_first_undisturbed(server, fast_io):
    first = open_visa(server.resource, fast_io=fast_io)
    ref = open_sim()
    try:
        for d in (first, ref):
            d.set_seed(21)
        x = random_patterns(120, seed=6)
        part1 = first.acquire(x[:60])
        with pytest.raises(DeviceBusy, match="in use"):
            drivers.connect(server.resource, timeout_s=2, fast_io=fast_io)
        # a plain pyvisa client is refused too, with the documented greeting
        rm = pyvisa.ResourceManager("@py")
        res = rm.open_resource(server.resource, read_termination="\n", write_termination="\n", timeout=2000)
        try:
            assert res.read().startswith("!BUSY")
        finally:
            res.close()  # not rm.close(): pyvisa shares one manager, it would close `first` too
        part2 = first.acquire(x[60:])
        np.testing.assert_array_equal(np.concatenate([part1, part2]), ref.acquire(x))
        assert first.status() == ref.status()
    finally:
        first.close()
        ref.close()
    _still_serving(server.resource)


def test_unreachable_resource_is_reported():
    with pytest.raises(DeviceDisconnected, match="could not open"):
        drivers.connect("TCPIP::127.0.0.1::1::SOCKET", timeout_s=1)


def test_settings_survive_reconnection(server, fast_io):
    a = open_visa(server.resource, fast_io=fast_io)
    a.configure(exposure_us=123.0)
    a.close()
    # reconnecting at once works: the server gives a just-closed holder a grace to be noticed
    b = drivers.connect(server.resource, timeout_s=5, fast_io=fast_io)
    try:
        assert b.settings.exposure_us == 123.0
        assert b.settings.n_features == SETTINGS["n_features"]
    finally:
        b.close()
