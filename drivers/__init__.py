"""Host drivers: one :class:`Device` interface, whether the OPU is simulated in-process or reached
over VISA (real hardware or the emulator ``opu serve``). Switch by changing one resource string::

    import drivers
    with drivers.connect("sim") as dev:                                   # in-process firmware model
        ...
    with drivers.connect("TCPIP::127.0.0.1::5025::SOCKET") as dev:        # an instrument, via pyvisa
        ...

See docs/drivers.md.
"""

from __future__ import annotations

from typing import Any

from . import sim as _sim  # noqa: F401  (importing it registers the "sim" backend)
from . import twin as _twin  # noqa: F401  (importing it registers the "twin" backend)
from . import visa as _visa  # noqa: F401  (importing it registers the "visa" backend)
from .base import CameraRoi, Device, DeviceIdentity, DeviceSettings, DeviceStatus, InputRoi
from .errors import (
    DeviceBusy,
    DeviceDisconnected,
    DeviceError,
    DeviceTimeout,
    DriverError,
    ProtocolError,
    SaturationWarning,
)
from .opu_facade import OPU, NotFittedError
from .registry import (
    ENTRY_POINT_GROUP,
    Backend,
    accepted_forms,
    backend,
    backends,
    find_backend,
    register_backend,
    unknown_uri_message,
    unregister_backend,
)


def connect(uri: str = "sim", **options: Any) -> Device:
    """Open the device named by ``uri`` and return it (open, usable as a context manager).

    The backend is the first registered one whose URI form matches (:mod:`drivers.registry`):
    ``"sim..."`` (:class:`drivers.sim.SimDevice`; options ``pattern_memory``, ``serial``,
    ``frame_buffer_bytes``), VISA resource strings (:class:`drivers.visa.VisaDevice`; options
    ``timeout_s``, ``backend`` (``"@py"``), ``fast_io``, ``resource_manager``), and any backend
    registered with :func:`backend` or through the ``opu_stack.drivers`` entry points. ``options``
    go to that backend; an option it does not take raises ``TypeError``. A URI no backend takes
    raises ``ValueError`` listing the accepted forms.
    """
    if not isinstance(uri, str) or not uri.strip():
        raise ValueError(unknown_uri_message(uri))
    text = uri.strip()
    found = find_backend(text)
    if found is None:
        raise ValueError(unknown_uri_message(uri))
    return found.create(text, options).open()


__all__ = [
    "ENTRY_POINT_GROUP",
    "OPU",
    "Backend",
    "CameraRoi",
    "Device",
    "DeviceBusy",
    "DeviceDisconnected",
    "DeviceError",
    "DeviceIdentity",
    "DeviceSettings",
    "DeviceStatus",
    "DeviceTimeout",
    "DriverError",
    "InputRoi",
    "NotFittedError",
    "ProtocolError",
    "SaturationWarning",
    "accepted_forms",
    "backend",
    "backends",
    "connect",
    "find_backend",
    "register_backend",
    "unregister_backend",
]
