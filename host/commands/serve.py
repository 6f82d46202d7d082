"""``opu serve``: the emulated OPU instrument on a TCP socket (SCPI, docs/protocol.md).

    $ opu serve --port 0
    TCPIP::127.0.0.1::40123::SOCKET

The resource string is printed (and flushed) once the server listens; it runs until Ctrl-C or
SIGTERM. ``--port 0`` picks a free port.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

import pydantic

import opu
from firmware_models import Controller, serve
from firmware_models.server import DEFAULT_PORT


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run the emulated OPU instrument (SCPI over TCP)",
        description="Serve the simulated OPU as a SCPI instrument at TCPIP::<host>::<port>::SOCKET "
        "(protocol: docs/protocol.md). Prints the VISA resource string, then runs until Ctrl-C.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"TCP port (default {DEFAULT_PORT}; 0 picks a free port)")
    p.add_argument("--config", type=Path, default=None,
                   help="opu.OPUConfig JSON file of the optical bench (default: opu.realistic)")
    p.add_argument("--seed", type=int, default=None, help="device seed (overrides the config's seed)")
    p.add_argument("--idle-timeout", type=float, default=300.0,
                   help="disconnect a client silent for this many seconds (default 300)")
    p.set_defaults(func=run)


def load_config(path: Path | None, seed: int | None) -> opu.OPUConfig:
    """The bench config from ``path`` (or the realistic preset), with ``seed`` applied."""
    if path is None:
        config = opu.realistic(seed=0 if seed is None else seed)
    else:
        try:
            config = opu.OPUConfig.model_validate_json(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise SystemExit(f"opu serve: cannot read --config {path}: {exc.strerror}") from None
        except pydantic.ValidationError as exc:
            raise SystemExit(f"opu serve: --config {path} is not a valid OPUConfig:\n{exc}") from None
    if seed is not None:
        if not 0 <= seed < 2**32:
            raise SystemExit(f"opu serve: --seed must be in 0..2**32-1, got {seed}")
        config = config.replace(seed=seed)
    return config


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise SystemExit(f"opu serve: --port must be 0..65535, got {args.port}")
    try:
        controller = Controller(load_config(args.config, args.seed))
    except opu.OPUError as exc:
        raise SystemExit(f"opu serve: {exc}") from None
    try:
        server = serve(controller, args.host, args.port, idle_timeout_s=args.idle_timeout)
    except OSError as exc:
        raise SystemExit(f"opu serve: cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    print(server.resource, flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.close()
        print("opu serve: stopped", file=sys.stderr, flush=True)
    return 0
