"""The emulated instrument on the network: SCPI over a raw TCP socket (docs/protocol.md).

One :class:`~firmware_models.controller.Controller` behind a threaded TCP server. Several clients
may connect, but only the first holds the device; any other gets ``!BUSY,"device in use by
<peer>"`` (after a 0.5 s grace for a holder that has just disconnected) and is disconnected. The
holder releases the device by disconnecting, by staying silent longer than ``idle_timeout_s``, or
when the server closes.

    >>> from firmware_models import Controller, serve          # doctest: +SKIP
    >>> with serve(Controller(), port=0) as srv:               # doctest: +SKIP
    ...     print(srv.resource)                                # TCPIP::127.0.0.1::<port>::SOCKET
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from collections.abc import Callable

from .controller import Controller
from .framing import FramingError, MessageReader
from .scpi import quote

#: default TCP port of SCPI-over-socket instruments
DEFAULT_PORT = 5025
#: a device holder that sends nothing for this long is disconnected (s)
IDLE_TIMEOUT_S = 300.0
#: how long a refused client may still send before its connection is closed (s)
BUSY_LINGER_S = 1.0
#: how long a new client waits for the holder's thread to notice that its connection ended (s):
#: a host that closes and at once reopens must not be refused by its own previous connection
HANDOVER_GRACE_S = 0.5


class InstrumentServer:
    """A started or startable TCP server around ``controller``.

    Attributes
    ----------
    host, port:
        Where it listens (``port`` is the real one when 0 was asked).
    resource:
        The VISA resource string ``TCPIP::<host>::<port>::SOCKET``.
    """

    def __init__(
        self,
        controller: Controller,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        *,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
        busy_linger_s: float = BUSY_LINGER_S,
    ) -> None:
        if not isinstance(controller, Controller):
            raise TypeError(f"controller must be a Controller, got {type(controller).__name__}")
        if not 0 <= int(port) <= 65535:
            raise ValueError(f"port must be 0..65535 (0 = any free port), got {port}")
        self.controller = controller
        self.idle_timeout_s = float(idle_timeout_s)
        self.busy_linger_s = float(busy_linger_s)
        self._holder: str | None = None
        self._holder_free = threading.Condition()
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._tcp = _TCPServer((host, int(port)), _Handler, self)
        addr = self._tcp.server_address
        self.host: str = str(addr[0])
        self.port: int = int(addr[1])

    @property
    def resource(self) -> str:
        return f"TCPIP::{self.host}::{self.port}::SOCKET"

    @property
    def holder(self) -> str | None:
        """``host:port`` of the client holding the device, or None."""
        return self._holder

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> InstrumentServer:
        """Serve in a background (daemon) thread. Returns self."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._tcp.serve_forever, kwargs={"poll_interval": 0.1},
                name=f"opu-server-{self.port}", daemon=True,
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until :meth:`close` is called from another thread (or Ctrl-C)."""
        self._tcp.serve_forever(poll_interval=0.2)

    def close(self) -> None:
        """Stop accepting, disconnect every client, and wait for their threads (idempotent)."""
        if self._closing.is_set():
            return
        self._closing.set()
        if self._thread is not None:
            self._tcp.shutdown()
            self._thread.join(timeout=5)
        with self._conns_lock:
            conns = list(self._conns)
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        self._tcp.server_close()

    def __enter__(self) -> InstrumentServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ exclusive access
    def _acquire(self, peer: str) -> str | None:
        """Take the device for ``peer``; returns None on success, else the current holder.

        Waits up to ``HANDOVER_GRACE_S`` for a release: the previous holder's thread frees the
        device only once it reads the end of its connection, which may come just after a new one.
        """
        with self._holder_free:
            self._holder_free.wait_for(lambda: self._holder is None, timeout=HANDOVER_GRACE_S)
            if self._holder is not None:
                return self._holder
            self._holder = peer
            return None

    def _release(self, peer: str) -> None:
        with self._holder_free:
            if self._holder == peer:
                self._holder = None
                self._holder_free.notify_all()

    def _track(self, sock: socket.socket, add: bool) -> None:
        with self._conns_lock:
            (self._conns.add if add else self._conns.discard)(sock)


class _TCPServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    block_on_close = True

    def __init__(self, address: tuple[str, int], handler: type, owner: InstrumentServer) -> None:
        self.owner = owner
        super().__init__(address, handler)


class _Handler(socketserver.BaseRequestHandler):
    """One client connection: refuse it (busy) or serve program messages until it goes."""

    server: _TCPServer

    def handle(self) -> None:
        owner = self.server.owner
        sock: socket.socket = self.request
        peer = f"{self.client_address[0]}:{self.client_address[1]}"
        owner._track(sock, True)
        try:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            holder = owner._acquire(peer)
            if holder is not None:
                self._refuse(sock, holder, owner.busy_linger_s)
                return
            try:
                self._serve(sock, owner)
            finally:
                owner._release(peer)
        finally:
            owner._track(sock, False)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    @staticmethod
    def _refuse(sock: socket.socket, holder: str, linger_s: float) -> None:
        """Send the busy line, then let the client read it before the connection closes.

        Closing at once with the client's first query unread would make the kernel reset the
        connection, and a reset may discard the busy line before the client reads it.
        """
        try:
            sock.sendall(f"!BUSY,{quote(f'device in use by {holder}')}\n".encode())
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(linger_s)
            while sock.recv(4096):
                pass
        except OSError:
            pass

    @staticmethod
    def _serve(sock: socket.socket, owner: InstrumentServer) -> None:
        ctl = owner.controller
        sock.settimeout(owner.idle_timeout_s)
        reader = MessageReader(sock.recv_into, ctl.max_input_block_bytes)
        send: Callable[[bytes], None] = sock.sendall
        while not owner._closing.is_set():
            try:
                msg = reader.read_message()
            except OSError:  # idle timeout, reset, shutdown by close()
                return
            if msg is None:  # the client went away (a partial message is dropped unexecuted)
                return
            if isinstance(msg, FramingError):
                ctl.push_error(msg.code, msg.message)
                continue
            reply = ctl.process(msg)
            if reply.data is None:
                continue
            if reply.delay_s > 0 and owner._closing.wait(reply.delay_s):
                return
            try:
                send(reply.data)
            except OSError:
                return
            if reply.close_after:
                return


def serve(controller: Controller, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
          **options: float) -> InstrumentServer:
    """Start serving ``controller`` in a background thread; ``port=0`` picks a free port.

    Returns the :class:`InstrumentServer` (use as a context manager, or call ``close()``).
    """
    return InstrumentServer(controller, host, port, **options).start()


def serve_forever(controller: Controller, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                  ready: Callable[[InstrumentServer], None] | None = None, **options: float) -> None:
    """Serve in this thread until interrupted; ``ready(server)`` is called once listening."""
    server = InstrumentServer(controller, host, port, **options)
    try:
        if ready is not None:
            ready(server)
        server.serve_forever()
    finally:
        server.close()
