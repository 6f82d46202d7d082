"""Physics-level model of an optical random-projection unit (OPU). Pure computation, no I/O.

Entry points:

* :class:`Simulator` - binary patterns (b, n) -> camera frames (b, m), plus the noiseless field
  and intensity;
* :func:`realistic` / :func:`ideal` / :func:`noiseless` - device presets (:class:`OPUConfig`);
* :mod:`opu.encoding` - ternarization, bit planes, thresholds;
* :mod:`opu.linear` - linear projections from intensities (anchor, complement).
"""

from .config import (
    CameraConfig,
    DMDConfig,
    LaserConfig,
    MediumConfig,
    OPUConfig,
    Roi,
    centred_roi,
    ideal,
    noiseless,
    realistic,
)
from .dmd import pack_patterns, unpack_patterns
from .encoding import BitPlanes, ternarize, thermometer_encode, threshold_encode
from .errors import CapacityError, ConfigError, OPUError, PatternError, ShapeError
from .linear import (
    AnchorScheme,
    ComplementScheme,
    LinearCalibration,
    LinearProjector,
    LinearScheme,
    SaturationWarning,
    linear_transform,
    make_scheme,
    projection_dtype,
)
from .medium import RecoveredMedium
from .model import Simulator

__all__ = [
    "AnchorScheme",
    "BitPlanes",
    "CameraConfig",
    "CapacityError",
    "ComplementScheme",
    "ConfigError",
    "DMDConfig",
    "LaserConfig",
    "LinearCalibration",
    "LinearProjector",
    "LinearScheme",
    "MediumConfig",
    "OPUConfig",
    "OPUError",
    "PatternError",
    "RecoveredMedium",
    "Roi",
    "SaturationWarning",
    "ShapeError",
    "Simulator",
    "centred_roi",
    "ideal",
    "linear_transform",
    "make_scheme",
    "noiseless",
    "pack_patterns",
    "projection_dtype",
    "realistic",
    "ternarize",
    "thermometer_encode",
    "threshold_encode",
    "unpack_patterns",
]
