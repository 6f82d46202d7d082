"""The instrument server over a real loopback socket (plain ``socket``; tests/drivers uses pyvisa)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import opu
from firmware_models import Controller, serve
from firmware_models.framing import encode_block

N, M = 64, 256
TIMEOUT = 10.0


class Client:
    """A minimal raw-socket SCPI client with exact block reads."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _more(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf += chunk

    def line(self) -> bytes:
        while b"\n" not in self.buf:
            self._more()
        out, _, self.buf = self.buf.partition(b"\n")
        return out

    def query(self, text: str) -> str:
        self.send(text.encode() + b"\n")
        return self.line().decode()

    def block(self) -> bytes:
        while len(self.buf) < 2:
            self._more()
        assert self.buf[:1] == b"#", self.buf[:20]
        n = int(self.buf[1:2])
        while len(self.buf) < 2 + n:
            self._more()
        length = int(self.buf[2 : 2 + n])
        end = 2 + n + length
        while len(self.buf) < end + 1:
            self._more()
        payload, term, self.buf = self.buf[2 + n : end], self.buf[end : end + 1], self.buf[end + 1 :]
        assert term == b"\n"
        return payload

    def read_all(self) -> bytes:
        """Everything until the server closes."""
        out = self.buf
        while chunk := self.sock.recv(1 << 20):
            out += chunk
        return out

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server():
    c = Controller(pattern_memory=64)
    c.set_settings({"n_features": N, "camera_roi": {"row": 500, "col": 900, "height_px": 16, "width_px": 16}})
    with serve(c, port=0, idle_timeout_s=20.0, busy_linger_s=0.5) as srv:
        yield srv


def upload_and_acquire(cl: Client, x: np.ndarray) -> np.ndarray:
    cl.send(b"SEQ:DATA " + encode_block(opu.pack_patterns(x).tobytes()) + b";ACQ:STAR\n")
    cl.send(b"FETC:FRAM?\n")
    return np.frombuffer(cl.block(), np.uint8).reshape(len(x), M)


def patterns(b: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2, size=(b, N)).astype(bool)


def test_idn_resource_and_frames_equal_the_in_process_controller(server):
    assert server.resource == f"TCPIP::127.0.0.1::{server.port}::SOCKET"
    cl = Client(server.port)
    assert cl.query("*IDN?") == "OpenOPU,OPU-1140-SIM,SIM0001,1.0.0"
    x = patterns(20, seed=1)
    got = upload_and_acquire(cl, x)
    assert cl.query("SYST:ERR?") == '0,"No error"'
    # independent in-process controller with the same seed and settings
    ref = Controller()
    ref.set_settings({"n_features": N, "camera_roi": [500, 900, 16, 16]})
    ref.upload_patterns(opu.pack_patterns(x))
    ref.start_acquisition()
    np.testing.assert_array_equal(got, ref.fetch_frames())
    cl.close()


def test_malformed_and_oversized_input_only_queue_errors(server):
    cl = Client(server.port)
    cl.send(b"\x00\xff\xfe garbage ;;; ###\n")
    cl.send(b"CAM:EXP " + b"9" * (70 * 1024) + b"\n")  # over the 64 KiB line limit
    big = server.controller.max_input_block_bytes() + 1  # over the block limit: read and discarded
    cl.send(b"SEQ:DATA " + encode_block(bytes(big)) + b"\n")
    codes = []
    for _ in range(6):
        code = int(cl.query("SYST:ERR?").split(",")[0])
        if code == 0:
            break
        codes.append(code)
    assert -223 in codes and -102 in codes
    assert cl.query("*IDN?").startswith("OpenOPU")
    cl.close()


def test_disconnect_mid_block_frees_the_device_for_the_next_client(server):
    cl = Client(server.port)
    assert cl.query("*IDN?").startswith("OpenOPU")  # it holds the device now
    cl.send(b"SEQ:DATA #41000" + b"\x00" * 300)  # 300 of 1000 bytes, then gone
    cl.close()
    deadline = time.monotonic() + TIMEOUT
    while server.holder is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    c2 = Client(server.port)
    assert c2.query("*IDN?").startswith("OpenOPU")
    assert c2.query("SEQ:COUN?") == "0"  # the partial upload was never executed
    c2.close()


def test_second_client_is_refused_busy_and_the_first_is_undisturbed(server):
    first = Client(server.port)
    x = patterns(8, seed=2)
    a = upload_and_acquire(first, x)
    second = Client(server.port)
    second.send(b"*RST;CAM:EXP 1\n")  # must not reach the device
    line = second.line().decode()
    assert line.startswith('!BUSY,"device in use by 127.0.0.1:')
    assert str(first.sock.getsockname()[1]) in line
    assert second.read_all() == b""  # then closed by the server
    second.close()
    assert first.query("CAM:EXP?") == "400.0" and first.query("DMD:FEAT?") == str(N)
    first.send(b"FETC:FRAM?\n")
    np.testing.assert_array_equal(np.frombuffer(first.block(), np.uint8).reshape(8, M), a)
    first.close()


def test_fault_drop_closes_in_the_middle_of_the_block_and_others_are_served(server):
    cl = Client(server.port)
    upload_and_acquire(cl, patterns(10))
    cl.send(b"SIM:FAUL DROP\n")
    cl.send(b"FETC:FRAM?\n")
    data = cl.read_all()
    assert data.startswith(b"#42560") and len(data) == 6 + 10 * M // 2  # half the payload, no terminator
    cl.close()
    c2 = Client(server.port)
    c2.send(b"FETC:FRAM?\n")
    assert len(c2.block()) == 10 * M  # one-shot; the frames are still there
    c2.close()


def test_fault_delay_truncate_corrupt_on_the_raw_socket(server):
    cl = Client(server.port)
    upload_and_acquire(cl, patterns(4))
    # wide margins for a loaded machine: a 2 s delay, and 1 s allowed for an undelayed reply
    cl.send(b"SIM:FAUL DEL,2000\n")
    t0 = time.monotonic()
    assert cl.query("*IDN?").startswith("OpenOPU")
    assert time.monotonic() - t0 >= 1.95
    t0 = time.monotonic()
    cl.query("*IDN?")
    assert time.monotonic() - t0 < 1.0  # one-shot
    cl.send(b"SIM:FAUL TRUN\nFETC:FRAM?\n")
    assert cl.line() == b"#410"  # "#4" + half of the 4 length digits of 1024, no payload
    cl.send(b"SIM:FAUL CORR\nFETC:FRAM? 0,1\n")
    hdr = b""
    while len(hdr) < 5 + M + 1:
        hdr += cl.sock.recv(4096)
    assert hdr.startswith(b"#X256") and hdr.endswith(b"\n") and len(hdr) == 5 + M + 1
    assert cl.query("SYST:ERR?") == '0,"No error"'
    cl.close()


def test_idle_client_is_disconnected_after_the_timeout():
    c = Controller()
    with serve(c, port=0, idle_timeout_s=0.3) as srv:
        cl = Client(srv.port)
        assert cl.query("*IDN?").startswith("OpenOPU")
        time.sleep(1.5)  # 5x the idle timeout: the server thread gets its turn on a loaded machine
        assert cl.read_all() == b""
        cl.close()
        c2 = Client(srv.port)
        assert c2.query("*IDN?").startswith("OpenOPU")
        c2.close()


def test_close_disconnects_clients_and_frees_the_port():
    srv = serve(Controller(), port=0)
    cl = Client(srv.port)
    assert cl.query("*IDN?").startswith("OpenOPU")
    srv.close()
    assert cl.read_all() == b""
    cl.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", srv.port), timeout=1.0)


def test_opu_serve_command_prints_the_resource_and_stops_on_sigterm(tmp_path):
    cfg = tmp_path / "bench.json"
    cfg.write_text(opu.realistic(seed=3).model_dump_json())
    code = ("import argparse, sys; from host.commands import serve as s; p = argparse.ArgumentParser(); "
            "s.register(p.add_subparsers()); a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))")
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen([sys.executable, "-c", code, "serve", "--port", "0", "--config", str(cfg),
                             "--seed", "9"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=root,
                            env=env, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("TCPIP::127.0.0.1::") and line.endswith("::SOCKET")
        cl = Client(int(line.split("::")[2]))
        assert cl.query("SIM:SEED?") == "9"
        cl.close()
        proc.terminate()
        assert proc.wait(timeout=TIMEOUT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
