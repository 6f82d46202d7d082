"""Noise calibration of an OPU through the ``drivers.Device`` interface (EMVA 1288 linear model).

>>> import drivers                                                        # doctest: +SKIP
>>> from host.calibration import calibrate, make_plan                     # doctest: +SKIP
>>> with drivers.connect("sim") as dev:                                   # doctest: +SKIP
...     report = calibrate(dev, "cal_out", make_plan(quick=True))

Writes ``calibration.json`` (:class:`CalibrationReport`), PNG plots and ``twin.json`` (an
``opu.OPUConfig`` for ``drivers.connect("sim:cal_out/twin.json")``). Method: docs/calibration.md.
"""

from .errors import CalibrationError, NoLightError, PlanError, SaturatedDeviceError
from .plan import CalibrationPlan, make_plan
from .report import CalibrationReport, Figure
from .runner import CalibrationAborted, calibrate
from .summary import budget_text, summary_text
from .twin import QE_ASSUMED, build_twin

__all__ = [
    "QE_ASSUMED",
    "CalibrationAborted",
    "CalibrationError",
    "CalibrationPlan",
    "CalibrationReport",
    "Figure",
    "NoLightError",
    "PlanError",
    "SaturatedDeviceError",
    "budget_text",
    "build_twin",
    "calibrate",
    "make_plan",
    "summary_text",
]
