"""Known simulated devices for the calibration round trip (shared by the tests and their fixture).

Each device is an ``opu.OPUConfig`` written to JSON and opened with ``drivers.connect("sim:PATH")``;
the recovered figures are compared with the config's parameters (independent ground truth).
"""

from __future__ import annotations

import drivers
import opu
from host.calibration import calibrate, make_plan
from host.calibration.reference_devices import GRID, grid_config, true_saturation_e

__all__ = ["GRID", "grid_config", "run_calibration", "true_saturation_e"]


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
