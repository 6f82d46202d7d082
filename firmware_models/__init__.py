"""The device's firmware as a model: the controller (state machine, pattern memory, sequencer, frame
buffer, error queue, optical bench) and the SCPI-over-TCP instrument server.

* :class:`Controller` - transport-neutral core: ``handle(request bytes) -> response bytes``, plus the
  same operations as Python methods for the in-process driver; built from one module per job
  (:mod:`.protocol` the settings and fault tables, :mod:`.settings`, :mod:`.status`, :mod:`.device`,
  :mod:`.bench`, :mod:`.faults`, :mod:`.scpi_front`; see :mod:`.controller`);
* :func:`serve` / :func:`serve_forever` - the emulated instrument at ``TCPIP::<host>::<port>::SOCKET``.

The wire protocol is specified in docs/protocol.md.
"""

from .controller import Controller, FirmwareError, Reply, State
from .server import InstrumentServer, serve, serve_forever

__all__ = ["Controller", "FirmwareError", "InstrumentServer", "Reply", "State", "serve", "serve_forever"]
