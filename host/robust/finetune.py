"""ROPUST fine-tuning: start a ``cnn-opu`` from a trained ``cnn`` run's conv and dense weights.

The optical readout (``out``: m x C) has no counterpart in the plain conv net and keeps its fresh
initialisation; every other array must match in shape (same ``--channels`` and ``--dense-width``).
"""

from __future__ import annotations

from pathlib import Path

import jax

from host.train import checkpoint
from host.train.checkpoint import CheckpointError


def load_run_params(run_dir: str | Path, with_meta: bool = False) -> tuple:
    """(params, TrainConfig[, checkpoint meta]) of the run in ``run_dir`` (config.json, checkpoint.npz)."""
    from host.train.tasks import build_task
    from host.train.trainer import CHECKPOINT, CONFIG, TrainConfig, make_optimizer

    run = Path(run_dir)
    if not (run / CONFIG).is_file() or not (run / CHECKPOINT).is_file():
        raise CheckpointError(f"{run} is not a finished training run (needs {CONFIG} and {CHECKPOINT})")
    cfg = TrainConfig.model_validate_json((run / CONFIG).read_text())
    task = build_task(cfg)
    params = task.model.init(jax.random.PRNGKey(cfg.seed), task.example().inputs)
    opt_state = make_optimizer(cfg).init(params)
    aux: dict = {}
    if cfg.mode == "pfa":
        raise CheckpointError(
            f"{run}: a PFA run cannot initialise a backbone (its checkpoint holds PFA state)"
        )
    (params, _, _), meta = checkpoint.load(run / CHECKPOINT, (params, opt_state, aux))
    return (params, cfg, meta) if with_meta else (params, cfg)


def load_backbone(run_dir: str | Path, params: dict) -> dict:
    """``params`` with every entry but ``out`` replaced by the ``cnn`` run's (shapes checked)."""
    src, cfg = load_run_params(run_dir)
    if cfg.model != "cnn":
        raise CheckpointError(f"--init-from needs a --model cnn run, {run_dir} is --model {cfg.model}")
    out = dict(params)
    for name, arrays in params.items():
        if name == "out":
            continue
        if name not in src:
            raise CheckpointError(f"{run_dir} has no layer {name!r} (it has {sorted(src)})")
        for k, v in arrays.items():
            if src[name][k].shape != v.shape:
                raise CheckpointError(
                    f"{run_dir}: {name}.{k} is {src[name][k].shape}, the cnn-opu needs "
                    f"{v.shape} (use the same --channels and --dense-width)"
                )
        out[name] = dict(src[name])
    return out
