"""The device controller: the firmware model of the OPU, as Python calls and as SCPI bytes.

Transport-neutral: :meth:`Controller.handle` takes one complete program message (bytes, see
docs/protocol.md) and returns the response bytes; the TCP server (:mod:`firmware_models.server`)
and any other transport only move bytes. The Python methods (those of
:class:`~firmware_models.device.DeviceCore`) are the same operations for an in-process host (they
raise :class:`FirmwareError` instead of queueing the error).

The controller is composed of one module per job:

* :mod:`.protocol` - every setting and fault kind declared once (header, type, unit, range,
  power-on value, consistency rules);
* :mod:`.settings` - the settings transaction (stage, commit, roll back; -222/-221 checks);
* :mod:`.status` - the error queue and the status registers;
* :mod:`.bench` - the optics (:class:`opu.Simulator` built lazily from the bench config with the
  settings applied) and the device clock, handed to every Simulator it builds, so frame ``f``'s
  noise is the same whatever the sequence of rebuilds;
* :mod:`.device` - the state machine, pattern memory, acquisition, frame buffer, ``SIM:`` ops;
* :mod:`.faults` - the armed faults and the byte-level shaping of a response;
* :mod:`.scpi_front` - the command table and handlers: bytes in, :class:`Reply` out.
"""

from __future__ import annotations

import opu

from .device import FIRMWARE_VERSION, MAX_IDLE_S, MODEL, SATURATE_FACTOR, DeviceCore, State
from .errors import FirmwareError
from .faults import Reply
from .protocol import FAULT_KINDS, MANUFACTURER, MAX_DELAY_MS, SETTING_KEYS
from .scpi_front import ScpiFrontEnd
from .status import ERROR_QUEUE_SIZE

__all__ = [
    "ERROR_QUEUE_SIZE",
    "FAULT_KINDS",
    "FIRMWARE_VERSION",
    "MANUFACTURER",
    "MAX_DELAY_MS",
    "MAX_IDLE_S",
    "MODEL",
    "SATURATE_FACTOR",
    "SETTING_KEYS",
    "Controller",
    "FirmwareError",
    "Reply",
    "State",
]


class Controller(DeviceCore):
    """The emulated OPU's firmware. See the module docstring and docs/protocol.md.

    Parameters
    ----------
    config:
        The optical bench (default ``opu.realistic(seed=0)``). Its camera and DMD settings are the
        power-on (and ``*RST``) device settings; ``n_features`` starts at 1024.
    serial:
        Serial number reported by ``*IDN?``.
    pattern_memory:
        Most patterns one uploaded sequence may hold.
    frame_buffer_bytes:
        Capacity of the frame buffer; a sequence whose frames do not fit is refused (205).
    medium:
        Optional :class:`opu.RecoveredMedium`: the bench's transmission matrix is this given matrix
        (a digital twin of a measured device) instead of the one generated from the seed.
    """

    def __init__(self, config: opu.OPUConfig | None = None, *, serial: str = "SIM0001",
                 pattern_memory: int = 4096, frame_buffer_bytes: int = 512 * 2**20,
                 medium: opu.RecoveredMedium | None = None) -> None:
        super().__init__(config, serial=serial, pattern_memory=pattern_memory,
                         frame_buffer_bytes=frame_buffer_bytes, medium=medium)
        self.front = ScpiFrontEnd(self)

    def handle(self, request: bytes) -> bytes | None:
        """Execute one program message; return the response (with ``\\n``) or None. Never raises."""
        return self.process(request).data

    def process(self, request: bytes | bytearray | memoryview) -> Reply:
        """Like :meth:`handle`, plus the transport-level faults (delay, drop) for the server."""
        with self._lock:
            return self.front.process(request)
