"""Sweeps on a local Ray instance (2 CPUs): the table and summary, resuming without re-running
finished trials, and a failing trial reported while the others finish. Tiny digital-DFA trials
keep it fast; the trials' optical path is the trainer's own (tests/train)."""

from __future__ import annotations

import json

import pytest

from host.sweep import SweepSpec, run_sweep, worker_env

ray = pytest.importorskip("ray")  # installed by `make test` (the cluster extra)

TINY = {"mode": "dfa", "epochs": 1, "hidden": [8], "batch_size": 32, "max_train_samples": 64,
        "alignment_batch": 16}


def _spec(grid: dict) -> SweepSpec:
    return SweepSpec.model_validate({"train": TINY, "grid": grid, "metric": "test_accuracy"})


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=100 * 2**20,
             runtime_env={"env_vars": worker_env(_spec({"train.seed": [0]}))})
    yield
    ray.shutdown()


def _rows(out):
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_four_trial_sweep_writes_the_table_and_resumes(local_ray, tmp_path):
    out = tmp_path / "sweep"
    first = run_sweep(_spec({"train.lr": [1e-3], "train.seed": [0, 1]}), out, log=lambda s: None)
    assert (first.total, first.ran, first.ok, first.failed) == (2, 2, 2, [])
    # the same sweep grown to 4 trials: only the 2 new ones run
    spec = _spec({"train.lr": [1e-3, 1e-2], "train.seed": [0, 1]})
    second = run_sweep(spec, out, log=lambda s: None)
    assert (second.total, second.skipped, second.ran, second.ok) == (4, 2, 2, 4)
    rows = _rows(out)
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}
    assert all(0 <= r["test_accuracy"] <= 1 for r in rows)
    assert {(r["train.lr"], r["train.seed"]) for r in rows} == {(a, b) for a in (1e-3, 1e-2) for b in (0, 1)}
    for r in rows:  # each trial trained in its own directory
        assert (out / "trials" / r["trial_id"] / "metrics.jsonl").is_file()
    csv_lines = (out / "results.csv").read_text().splitlines()
    assert len(csv_lines) == 5 and "test_accuracy" in csv_lines[0]
    assert (out / "summary.png").stat().st_size > 1000
    summary = json.loads((out / "summary.json").read_text())
    (points,) = summary.values()
    assert [p[3] for p in points] == [2, 2]  # two seeds per x value -> the error bars
    # re-running the finished sweep runs nothing and leaves the trials untouched
    stamp = {r["trial_id"]: (out / "trials" / r["trial_id"] / "metrics.jsonl").stat().st_mtime_ns
             for r in rows}
    third = run_sweep(spec, out, log=lambda s: None)
    assert (third.ran, third.skipped, third.ok) == (0, 4, 4)
    assert len(_rows(out)) == 4
    assert stamp == {t: (out / "trials" / t / "metrics.jsonl").stat().st_mtime_ns for t in stamp}


def test_a_failing_trial_is_reported_and_the_others_finish(local_ray, tmp_path):
    out = tmp_path / "sweep"
    report = run_sweep(_spec({"train.batch_size": [32, 100_000], "train.seed": [0]}), out, log=lambda s: None)
    assert report.ok == 1 and len(report.failed) == 1
    (bad,) = report.failed
    assert bad["train.batch_size"] == 100_000 and "batch_size=100000" in bad["error"]
    assert (out / "trials" / bad["trial_id"] / "error.txt").is_file()
    ok = [r for r in _rows(out) if r["status"] == "ok"]
    assert len(ok) == 1 and ok[0]["train.batch_size"] == 32
