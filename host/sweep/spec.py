"""The sweep specification (YAML) and its expansion into trials.

A spec names a base training configuration, a base simulated device, and the parameters to vary::

    metric: test_accuracy          # column of the final epoch that the summary plots
    train:                         # host.train.TrainConfig fields shared by every trial
      mode: optical-dfa
      epochs: 2
      hidden: [64]
    device:                        # the simulated device of each trial
      preset: realistic            # realistic | ideal (opu presets)
      changes: {medium: {drift_time_constant_s: null}}
    grid:                          # cartesian product; keys: train.<field>, device.<section>.<field>
      device.camera.read_noise_e: [0.0, 10.0, 40.0]
      train.seed: [0, 1, 2]
    random:                        # optional: `samples` random points on top of the grid
      samples: 4
      seed: 0
      params: {device.camera.exposure_us: {loguniform: [100, 400]}}
    x: device.camera.read_noise_e  # x axis of the summary (default: the first grid key)
    seed_key: train.seed           # aggregated into error bars (mean +- std)
    devices: []                    # hardware URIs instead of simulated devices (one trial per
                                   #   device at a time)
    cpus_per_trial: 1
    gpus_per_trial: 0
    jax_threads: 1

Every trial is a dict of dotted keys to values; its id is a hash of that dict, so re-running the
same spec finds the trials it already finished (the results table is keyed by it).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

_PREFIXES = ("train.", "device.")


class SpecError(ValueError):
    """The sweep specification is invalid (the message names the key and what is allowed)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceSpec(_Strict):
    """The simulated device of every trial: an opu preset plus ``OPUConfig.replace`` changes."""

    preset: Literal["realistic", "ideal"] = "realistic"
    changes: dict[str, Any] = Field(default_factory=dict)


class Distribution(_Strict):
    """One sampled parameter: exactly one of uniform [lo, hi], loguniform [lo, hi], choice [...]."""

    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    choice: list[Any] | None = None

    @model_validator(mode="after")
    def _one(self) -> Distribution:
        given = [k for k in ("uniform", "loguniform", "choice") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of uniform, loguniform, choice; got {given or 'none'}")
        if self.loguniform is not None and min(self.loguniform) <= 0:
            raise ValueError(f"loguniform bounds must be > 0, got {self.loguniform}")
        return self

    def draw(self, rng: np.random.Generator) -> Any:
        if self.uniform is not None:
            return float(rng.uniform(*self.uniform))
        if self.loguniform is not None:
            lo, hi = self.loguniform
            return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        assert self.choice is not None
        return self.choice[int(rng.integers(len(self.choice)))]


class RandomSpec(_Strict):
    samples: int = Field(..., ge=1)
    seed: int = Field(0, ge=0)
    params: dict[str, Distribution]


class SweepSpec(_Strict):
    """A whole sweep (see the module docstring)."""

    task: Literal["train"] = "train"
    metric: str = "test_accuracy"
    train: dict[str, Any] = Field(default_factory=dict)
    device: DeviceSpec = Field(default_factory=DeviceSpec)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    random: RandomSpec | None = None
    x: str | None = None
    seed_key: str = "train.seed"
    devices: list[str] = Field(default_factory=list, description="hardware URIs, one trial per device")
    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.0, ge=0)
    jax_threads: int | None = Field(1, ge=1, description="XLA CPU threads per trial; None = XLA default")
    max_concurrent: int | None = Field(None, ge=1)

    @field_validator("grid")
    @classmethod
    def _grid(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in grid.items():
            _check_key(key)
            if not values:
                raise ValueError(f"grid key {key!r} has no values")
        return grid

    @model_validator(mode="after")
    def _keys(self) -> SweepSpec:
        if self.random is not None:
            for key in self.random.params:
                _check_key(key)
        if not self.grid and self.random is None:
            raise ValueError("give a grid and/or random samples: nothing to sweep")
        if self.x is not None and self.x not in self.swept_keys:
            raise ValueError(f"x={self.x!r} is not a swept key; swept: {self.swept_keys}")
        if "device" in self.train:
            raise ValueError("train.device is set per trial (a simulated device or one of `devices`)")
        return self

    @property
    def swept_keys(self) -> list[str]:
        keys = list(self.grid)
        if self.random is not None:
            keys += [k for k in self.random.params if k not in keys]
        return keys

    @property
    def x_key(self) -> str:
        return self.x or next(k for k in self.swept_keys if k != self.seed_key or len(self.swept_keys) == 1)

    def trials(self) -> list[dict[str, Any]]:
        """Every trial's swept values (dotted key -> value), grid first, in a fixed order."""
        out: list[dict[str, Any]] = []
        grid = [dict(zip(self.grid, combo, strict=True)) for combo in itertools.product(*self.grid.values())]
        out.extend(grid or [{}])
        if self.random is not None:
            rng = np.random.default_rng(self.random.seed)
            base = out if grid else [{}]
            out = [
                {**g, **{k: d.draw(rng) for k, d in self.random.params.items()}}
                for _ in range(self.random.samples)
                for g in base
            ]
        return out


def _check_key(key: str) -> None:
    if not key.startswith(_PREFIXES) or key.count(".") < 1:
        raise ValueError(
            f"swept key {key!r} must be train.<field> or device.<section>.<field> (or device.seed)"
        )
    if key.startswith("device.") and key != "device.seed" and key.count(".") < 2:
        raise ValueError(
            f"device key {key!r} must be device.<section>.<field>, e.g. device.camera.read_noise_e"
        )


def trial_id(index: int, params: dict[str, Any]) -> str:
    """Stable id of a trial: its position and a hash of its values (``t003-1a2b3c4d``)."""
    digest = hashlib.sha1(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"t{index:03d}-{digest}"


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a YAML spec; raises :class:`SpecError` naming the problem."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise SpecError(f"sweep spec {str(p)!r} is not a file")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as err:
        raise SpecError(f"{p}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{p}: the spec must be a mapping of keys (metric, train, device, grid, ...)")
    try:
        return SweepSpec.model_validate(data)
    except ValidationError as err:
        raise SpecError(f"{p}: invalid sweep spec:\n{err}") from None
