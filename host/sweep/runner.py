"""Run a sweep on Ray Tune: locally by default, on an existing cluster with ``ray_address``.

Each pending trial (not already ``ok`` in ``OUT/results.jsonl``) becomes one Ray Tune trial of a
function trainable that calls :func:`host.sweep.trial.run_trial` in a Ray worker process. The
driver appends each trial's row to the table as soon as the trial ends (a Tune callback, one
writer), so an interrupted sweep keeps every finished trial and a re-run skips them. Failed trials
(an exception in training, or a worker process that died) are rows with ``status = "error"`` and
their error; the other trials carry on (``FailureConfig(max_failures=0, fail_fast=False)``).

JAX in parallel trials (docs/sweep.md): every worker gets ``XLA_FLAGS`` limiting XLA's CPU
thread pool to ``jax_threads`` (one thread per trial is faster when trials outnumber cores: no
oversubscription), the matching ``OMP/OPENBLAS/MKL_NUM_THREADS``, ``JAX_PLATFORMS=cpu`` when a
trial has no GPU share, and ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` (a trial does not take 75 % of a
GPU it shares) with ``XLA_PYTHON_CLIENT_MEM_FRACTION`` set to its share when ``gpus_per_trial`` < 1.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .spec import SweepSpec, trial_id
from .table import append_row, finished_ids, plot_summary, read_rows, summarize, write_csv
from .trial import check_trials

#: Ray's object store for a local instance: trials exchange only small rows
LOCAL_OBJECT_STORE_BYTES = 200 * 2**20


@dataclass
class SweepReport:
    """What a sweep did: counts, the failed trials with their errors, the output files."""

    out_dir: Path
    total: int
    skipped: int
    ran: int
    ok: int
    failed: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)


def worker_env(spec: SweepSpec) -> dict[str, str]:
    """Environment of every trial process (see the module docstring)."""
    env = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    if spec.jax_threads is not None:
        n = spec.jax_threads
        eigen = "false" if n == 1 else "true"
        env["XLA_FLAGS"] = f"--xla_cpu_multi_thread_eigen={eigen} intra_op_parallelism_threads={n}"
        env.update(OMP_NUM_THREADS=str(n), OPENBLAS_NUM_THREADS=str(n), MKL_NUM_THREADS=str(n))
    if spec.gpus_per_trial == 0:
        env["JAX_PLATFORMS"] = "cpu"
    elif spec.gpus_per_trial < 1:
        env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{0.95 * spec.gpus_per_trial:.3f}"
    return env


def _device_resource(i: int) -> str:
    return f"opu_device_{i}"


def _trainable(config: dict[str, Any]) -> None:
    """Ray Tune function trainable: one trial, reported once as a JSON row."""
    from ray import tune

    from .trial import run_trial

    t = config["trial"]
    spec = SweepSpec.model_validate(t["spec"])
    row = run_trial(spec, t["tid"], t["params"], t["trial_dir"], t["device_uri"])
    tune.report({"row_json": json.dumps(row, default=str), "trial_ok": int(row["status"] == "ok")})


def _make_callback(out: Path, seen: set[str], log: Callable[[str], None]):
    from ray.tune import Callback

    class TableCallback(Callback):
        """Appends each trial's row to the table in the driver as the trial reports or dies."""

        def on_trial_result(self, iteration, trials, trial, result, **info):
            row = json.loads(result["row_json"])
            append_row(out, row)
            seen.add(row["trial_id"])
            status = "ok" if row["status"] == "ok" else f"FAILED ({row['error']})"
            log(f"  trial {row['trial_id']}: {status} in {row['wall_s']:.1f} s")

        def on_trial_error(self, iteration, trials, trial, **info):
            t = trial.config["trial"]
            if t["tid"] in seen:
                return
            msg = getattr(trial, "error_msg", None) or "the trial's worker process failed (see Ray's logs)"
            row = {"trial_id": t["tid"], **t["params"], "status": "error", "error": str(msg)[-2000:]}
            append_row(out, row)
            seen.add(t["tid"])
            log(f"  trial {t['tid']}: FAILED (worker died)")

    return TableCallback()


def _run_on_ray(
    spec: SweepSpec,
    pending: list[tuple[str, dict[str, Any], str | None]],
    out: Path,
    ray_address: str | None,
    workers: int | None,
    log: Callable[[str], None],
) -> None:
    import ray
    from ray import tune

    env = worker_env(spec)
    own = not ray.is_initialized()
    if own:
        if ray_address:
            ray.init(address=ray_address, runtime_env={"env_vars": env}, log_to_driver=False)
        else:
            ray.init(
                num_cpus=workers or os.cpu_count() or 1,
                num_gpus=0 if spec.gpus_per_trial == 0 else None,
                resources={_device_resource(i): 1 for i in range(len(spec.devices))},
                include_dashboard=False,
                log_to_driver=False,
                object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                runtime_env={"env_vars": env},
            )
    spec_json = spec.model_dump(mode="json")
    configs = [
        {"tid": tid, "params": params, "device_uri": uri, "trial_dir": str(out / "trials" / tid),
         "spec": spec_json}
        for tid, params, uri in pending
    ]

    def resources(config: dict[str, Any]) -> tune.PlacementGroupFactory:
        bundle: dict[str, float] = {"CPU": spec.cpus_per_trial}
        if spec.gpus_per_trial:
            bundle["GPU"] = spec.gpus_per_trial
        uri = config["trial"]["device_uri"]
        if uri is not None:  # one trial per hardware device at a time
            bundle[_device_resource(spec.devices.index(uri))] = 1
        return tune.PlacementGroupFactory([bundle])

    seen: set[str] = set()
    tuner = tune.Tuner(
        tune.with_resources(_trainable, resources),
        param_space={"trial": tune.grid_search(configs)},
        tune_config=tune.TuneConfig(max_concurrent_trials=spec.max_concurrent or workers,
                                     reuse_actors=True),  # a worker keeps its JAX compilation cache
        run_config=tune.RunConfig(
            name="tune",
            storage_path=str(out / "ray"),
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
            callbacks=[_make_callback(out, seen, log)],
        ),
    )
    try:
        tuner.fit()
    finally:
        if own:
            ray.shutdown()


def run_sweep(
    spec: SweepSpec,
    out_dir: str | Path,
    *,
    ray_address: str | None = None,
    workers: int | None = None,
    log: Callable[[str], None] = print,
) -> SweepReport:
    """Run the trials of ``spec`` not yet finished in ``out_dir``; write the table and summary.

    ``ray_address``: an existing Ray cluster (``ray://host:10001`` or ``host:6379``); None starts a
    local Ray instance with ``workers`` CPUs (default: all) and stops it at the end.
    """
    check_trials(spec)
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "spec.json").write_text(spec.model_dump_json(indent=1))
    trials = [(trial_id(i, p), p) for i, p in enumerate(spec.trials())]
    done = finished_ids(out)
    pending = [
        (tid, p, spec.devices[i % len(spec.devices)] if spec.devices else None)
        for i, (tid, p) in enumerate(trials)
        if tid not in done
    ]
    log(f"sweep: {len(trials)} trials, {len(trials) - len(pending)} already finished, running {len(pending)}")
    if pending:
        _run_on_ray(spec, pending, out, ray_address, workers, log)
    ids = {tid for tid, _ in trials}
    rows = [r for r in read_rows(out) if r["trial_id"] in ids]
    failed = [r for r in rows if r.get("status") != "ok"]
    files = {"jsonl": out / "results.jsonl", "csv": write_csv(out, rows)}
    summary = summarize(rows, spec.metric, spec.x_key, spec.seed_key, spec.swept_keys)
    files["png"] = plot_summary(out, summary, spec.metric, spec.x_key, len(failed))
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return SweepReport(out, len(trials), len(trials) - len(pending), len(pending), len(rows) - len(failed),
                       failed, files)
