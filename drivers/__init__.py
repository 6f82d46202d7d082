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

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from .base import CameraRoi, Device, DeviceIdentity, DeviceSettings, DeviceStatus, InputRoi
from .errors import (
    DeviceBusy,
    DeviceDisconnected,
    DeviceError,
    DeviceTimeout,
    DriverError,
    ProtocolError,
    SaturationWarning,
    UnsupportedSetting,
)
from .opu_facade import OPU, NotFittedError

#: VISA resource strings (interface prefixes of the VISA resource-name grammar)
_VISA = re.compile(r"^(TCPIP\d*|ASRL|GPIB\d*|USB\d*|VXI\d*|PXI\d*)(::|\d|/)", re.IGNORECASE)

URI_FORMS = (
    '"sim"                              in-process simulator, opu.realistic(seed=0)',
    '"sim?seed=3"                       same with another seed',
    '"sim:PATH.json[?seed=3]"           in-process simulator from an opu.OPUConfig JSON file',
    '"TCPIP::host::port::SOCKET"        instrument or emulator over a raw TCP socket (pyvisa)',
    '"TCPIP::host::INSTR", "ASRL..."    any other VISA resource string (pyvisa)',
    '"lightonml[?n_components=..]"      a LightOn OPU through lightonml.OPU (needs lightonopu)',
    '"lightonml:simulated[?seed=..]"    lightonml\'s own SimulatedOpuDevice',
)


def connect(uri: str = "sim", **options: Any) -> Device:
    """Open the device named by ``uri`` and return it (open, usable as a context manager).

    ``options`` go to the device class: for VISA resources ``timeout_s``, ``backend`` (``"@py"``),
    ``fast_io``, ``resource_manager`` (:class:`drivers.visa.VisaDevice`); for ``sim`` URIs
    ``pattern_memory``, ``serial``, ``frame_buffer_bytes`` (:class:`drivers.sim.SimDevice`).
    Anything else raises ``ValueError`` listing the accepted forms.
    """
    if not isinstance(uri, str) or not uri.strip():
        raise ValueError(_bad_uri(uri))
    text = uri.strip()
    if text == "sim" or text.startswith(("sim:", "sim?")):
        return _sim_device(text, options).open()
    # --- lightonml backend (issue 14); moves onto the backend registry at merge time
    if text == "lightonml" or text.startswith(("lightonml:", "lightonml?")):
        from .lightonml_device import connect_lightonml

        return connect_lightonml(text, **options)
    # --- end lightonml backend
    if _VISA.match(text):
        from .visa import VisaDevice

        return VisaDevice(text, **options).open()
    raise ValueError(_bad_uri(uri))


def _bad_uri(uri: object) -> str:
    return f"unknown device URI {uri!r}; accepted forms:\n  " + "\n  ".join(URI_FORMS)


def _sim_device(uri: str, options: dict[str, Any]) -> Device:
    import opu

    from .sim import SimDevice

    body, _, query = uri[3:].partition("?")
    params = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    unknown = set(params) - {"seed"}
    if unknown:
        raise ValueError(f"unknown parameter(s) {sorted(unknown)} in {uri!r}; only 'seed' is accepted")
    seed = None
    if "seed" in params:
        try:
            seed = int(params["seed"])
        except ValueError:
            raise ValueError(f"seed in {uri!r} must be an integer, got {params['seed']!r}") from None
    if body.startswith(":"):
        path = Path(body[1:]).expanduser()
        if not path.is_file():
            raise ValueError(f"simulator config {str(path)!r} (from {uri!r}) is not a file")
        config = opu.OPUConfig.model_validate_json(path.read_text())
        if seed is not None:
            config = config.replace(seed=seed)
    elif body:
        raise ValueError(_bad_uri(uri))
    else:
        config = opu.realistic(seed=seed or 0)
    return SimDevice(config=config, resource=uri, **options)


__all__ = [
    "OPU",
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
    "UnsupportedSetting",
    "connect",
]
