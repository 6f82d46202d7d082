"""Known simulated devices for the calibration round trip (shared by the tests and their fixture).

Each device is an ``opu.OPUConfig`` written to JSON and opened with ``drivers.connect("sim:PATH")``;
the recovered figures are compared with the config's parameters (independent ground truth).
"""

from __future__ import annotations

import drivers
import opu
from host.calibration import calibrate, make_plan
from host.calibration.reference_devices import GRID, grid_config, true_saturation_e

__all__ = ["GRID", "assert_consistent", "grid_config", "run_calibration", "true_saturation_e"]


def run_calibration(cfg: opu.OPUConfig, tmp, max_wait_s: float):
    path = tmp / "device.json"
    path.write_text(cfg.model_dump_json())
    with drivers.connect(f"sim:{path}") as dev:
        return calibrate(
            dev,
            tmp / "out",
            make_plan(quick=True, max_wait_s=max_wait_s),
            progress=False,
            plots=False,
            echo=None,
        )


def assert_consistent(figure, truth: float, n_se: float = 4.0, rel: float = 0.0, what: str = "") -> None:
    """``figure`` agrees with the configured ``truth`` within its stated bounds: an upper (lower)
    bound at or above (below) the truth, a value within ``n_se`` of its standard errors (+ ``rel``
    of the truth for effects the standard error leaves out, named where used)."""
    assert figure is not None and figure.value is not None, what
    if figure.bound == "upper":
        assert truth <= figure.value, (what, figure, truth)
    elif figure.bound == "lower":
        assert truth >= figure.value, (what, figure, truth)
    else:
        assert figure.uncertainty is not None and figure.uncertainty > 0, (what, figure)
        limit = n_se * figure.uncertainty + rel * abs(truth)
        assert abs(figure.value - truth) <= limit, (what, figure, truth)
