"""Fixtures of the driver tests: an in-process device, the emulator on a loopback port, and both.

Every fixture builds fresh controllers from the same small configuration, so frames are comparable
bit for bit across the two paths.
"""

from __future__ import annotations

import pytest
from drv_helpers import SETTINGS, new_controller, open_lightonml, open_sim, open_visa

import drivers
import opu
from firmware_models.server import serve


@pytest.fixture
def server():
    """The emulator serving a fresh controller on 127.0.0.1, a free port."""
    with serve(new_controller(), host="127.0.0.1", port=0) as srv:
        yield srv


@pytest.fixture(params=["sim", "visa", "visawire", "lightonml", "uri"])
def device(request):
    """The conformance suite's device: in-process, over VISA to the emulator (fast socket wire, or
    ``visawire``: pyvisa's message-based API as on NI-VISA/serial/INSTR), lightonml's own simulator
    through the lightonml backend (``lightonml:simulated``), or --device-uri."""
    if request.param == "sim":
        dev = open_sim()
    elif request.param == "lightonml":
        dev = open_lightonml()
    elif request.param in ("visa", "visawire"):
        srv = request.getfixturevalue("server")
        dev = open_visa(srv.resource, fast_io=request.param == "visa")
    else:
        uri = request.config.getoption("--device-uri")
        if not uri:
            pytest.skip("no --device-uri given")
        if uri.startswith("lightonml"):
            dev = open_lightonml(uri)
        else:
            dev = drivers.connect(uri)
            dev.configure(**SETTINGS, camera_roi=opu.centred_roi(256).model_dump())
    yield dev
    dev.close()


@pytest.fixture(params=[True, False], ids=["socket", "visawire"])
def pair(server, request):
    """(in-process device, VISA device) built from identical controllers, over either wire."""
    a, b = open_sim(), open_visa(server.resource, fast_io=request.param)
    yield a, b
    a.close()
    b.close()
