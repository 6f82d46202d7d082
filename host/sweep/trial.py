"""One trial of a sweep: build its device and training configuration, train, return one table row.

Plain Python (no Ray): the Ray trainable (:mod:`host.sweep.runner`) and the sequential baseline of
``bench/scale.py`` call the same :func:`run_trial`. A simulated trial writes its device
configuration to ``TRIAL_DIR/device.json`` and trains on ``sim:TRIAL_DIR/device.json`` (its own
device, nothing shared with other trials); a hardware trial uses the URI it was given. A trial
whose training raises is returned as a row with ``status = "error"`` and the error, so the sweep
carries on; a trial interrupted mid-run (its checkpoint exists) is resumed, not restarted.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path
from typing import Any

import opu

from .spec import SpecError, SweepSpec


def device_config(spec: SweepSpec, params: dict[str, Any]) -> opu.OPUConfig:
    """The trial's simulated device: the spec's preset and changes, then the swept device.* values."""
    preset = opu.realistic if spec.device.preset == "realistic" else opu.ideal
    cfg = preset(seed=int(params.get("device.seed", 0)))
    if spec.device.changes:
        cfg = cfg.replace(**spec.device.changes)
    nested: dict[str, dict[str, Any]] = {}
    for key, value in params.items():
        if key.startswith("device.") and key != "device.seed":
            _, section, field = key.split(".", 2)
            nested.setdefault(section, {})[field] = value
    return cfg.replace(**nested) if nested else cfg


def train_config(spec: SweepSpec, params: dict[str, Any], device_uri: str) -> Any:
    from host.train import TrainConfig

    fields = dict(spec.train)
    for key, value in params.items():
        if key.startswith("train."):
            name = key.split(".", 1)[1]
            if "." in name:  # train.feedback.<field>
                outer, inner = name.split(".", 1)
                fields[outer] = {**dict(fields.get(outer, {})), inner: value}
            else:
                fields[name] = value
    return TrainConfig.model_validate({**fields, "device": device_uri})


def check_trials(spec: SweepSpec) -> None:
    """Build every trial's device and training configuration before anything runs: a value out of
    range (e.g. ``epochs: 0``, a negative read noise) is a :class:`SpecError` naming the trial."""
    for params in spec.trials():
        try:
            device_config(spec, params)
            train_config(spec, params, "sim")
        except ValueError as err:
            raise SpecError(f"trial {params or '(base)'} is invalid:\n{err}") from None


def run_trial(
    spec: SweepSpec, tid: str, params: dict[str, Any], trial_dir: str | Path, device_uri: str | None = None
) -> dict[str, Any]:
    """Train one trial into ``trial_dir``; returns its table row (never raises for a failed run)."""
    out = Path(trial_dir)
    out.mkdir(parents=True, exist_ok=True)
    row: dict[str, Any] = {"trial_id": tid, **params, "status": "error", "error": None, "device": device_uri}
    t0 = time.perf_counter()
    try:
        from host.train import train

        if device_uri is None:
            cfg_path = out / "device.json"
            cfg_path.write_text(device_config(spec, params).model_dump_json(indent=1))
            device_uri = f"sim:{cfg_path.resolve()}"
            row["device"] = "sim"
        tcfg = train_config(spec, params, device_uri)
        resume = (out / "checkpoint.npz").is_file()
        res = train(tcfg, out, resume=resume, progress=False)
        final = res.final
        row.update({k: v for k, v in final.items() if isinstance(v, int | float | str | bool)})
        if spec.metric not in final:
            raise KeyError(f"metric {spec.metric!r} is not in the run's metrics {sorted(final)}")
        row["status"] = "ok"
    except Exception as err:  # the sweep carries on: the row records what went wrong
        row["error"] = f"{type(err).__name__}: {err}"
        (out / "error.txt").write_text(traceback.format_exc())
    row["wall_s"] = round(time.perf_counter() - t0, 3)
    return row
