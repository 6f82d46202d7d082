"""Transmission-matrix retrieval from intensity frames (Gupta et al. 2019/2020, numerical
interferometry) and the digital twin it gives. Method and measured accuracy: docs/tm_retrieval.md.

    >>> import drivers                                                       # doctest: +SKIP
    >>> from host.tm import make_plan, retrieve_tm
    >>> with drivers.connect("sim") as dev:                                  # doctest: +SKIP
    ...     tm, info = retrieve_tm(dev, make_plan(100, anchors=20), "out/")
    ...     y_hat = tm.predict_frames(x)           # (b, 100) 0/1 -> (b, m) expected frames, DN
    >>> twin = drivers.connect("twin:out/")                                  # doctest: +SKIP
"""

from .acquire import LightCheck, acquire_plan, set_light
from .align import align_rows, pearson, rel_frobenius_error
from .errors import NoLightError, SaturatedDeviceError, TMError, TMFileError, TMPlanError
from .plan import TMPlan, build_patterns, make_plan
from .result import RecoveredTM
from .retrieve import Retrieval, retrieve
from .runner import RefreshOutcome, RunInfo, prediction_correlation, refresh, restore_settings, retrieve_tm
from .twin import camera_from_frames, twin_config

__all__ = [
    "LightCheck",
    "NoLightError",
    "RecoveredTM",
    "RefreshOutcome",
    "Retrieval",
    "RunInfo",
    "SaturatedDeviceError",
    "TMError",
    "TMFileError",
    "TMPlan",
    "TMPlanError",
    "acquire_plan",
    "align_rows",
    "build_patterns",
    "camera_from_frames",
    "make_plan",
    "pearson",
    "prediction_correlation",
    "refresh",
    "rel_frobenius_error",
    "restore_settings",
    "retrieve",
    "retrieve_tm",
    "set_light",
    "twin_config",
]
