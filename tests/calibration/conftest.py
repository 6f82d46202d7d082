"""Cached calibrations of the grid devices of :mod:`cal_grid` (one per test session)."""

from __future__ import annotations

import pytest
from cal_grid import GRID, grid_config, run_calibration


@pytest.fixture(scope="session")
def calibrated(tmp_path_factory):
    """name -> (config, report, output dir): each grid device calibrated once per test session."""
    cache: dict = {}

    def get(name: str):
        if name not in cache:
            tmp = tmp_path_factory.mktemp(name)
            cfg = grid_config(name)
            cache[name] = (cfg, run_calibration(cfg, tmp, GRID[name][1]), tmp / "out")
        return cache[name]

    return get
