"""The sweep's results: ``results.jsonl`` (one row per finished trial, appended as trials end),
``results.csv`` (the same rows, latest per trial) and ``summary.png`` (metric vs the swept x,
other swept parameters as separate lines, seeds aggregated as mean +- standard deviation)."""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

JSONL = "results.jsonl"
CSV = "results.csv"
PNG = "summary.png"


def append_row(out_dir: Path, row: dict[str, Any]) -> None:
    """Append one row to results.jsonl (one write of one line: a crash leaves whole lines)."""
    with open(out_dir / JSONL, "a") as f:
        f.write(json.dumps(row, default=str) + "\n")


def read_rows(out_dir: Path) -> list[dict[str, Any]]:
    """The latest row of each trial (a re-run of a failed trial supersedes its error row)."""
    path = out_dir / JSONL
    if not path.is_file():
        return []
    latest: dict[str, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line of an interrupted write
            latest[row["trial_id"]] = row
    return list(latest.values())


def finished_ids(out_dir: Path) -> set[str]:
    """Trials with a successful row: a re-run skips them."""
    return {r["trial_id"] for r in read_rows(out_dir) if r.get("status") == "ok"}


def write_csv(out_dir: Path, rows: list[dict[str, Any]]) -> Path:
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    path = out_dir / CSV
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        for r in sorted(rows, key=lambda r: r["trial_id"]):
            w.writerow(r)
    return path


def summarize(
    rows: list[dict[str, Any]], metric: str, x_key: str, seed_key: str, swept: list[str]
) -> dict[str, list[tuple[Any, float, float, int]]]:
    """Per line (the other swept parameters), points (x, mean, std, n) over seeds of ok trials."""
    groups: dict[str, dict[Any, list[float]]] = defaultdict(lambda: defaultdict(list))
    others = [k for k in swept if k not in (x_key, seed_key)]
    for r in rows:
        if r.get("status") != "ok" or r.get(metric) is None:
            continue
        label = ", ".join(f"{k.split('.')[-1]}={r.get(k)}" for k in others) or metric
        groups[label][r.get(x_key)].append(float(r[metric]))
    out: dict[str, list[tuple[Any, float, float, int]]] = {}
    for label, pts in groups.items():
        series = []
        for x in sorted(pts, key=lambda v: (isinstance(v, str), v)):
            vals = pts[x]
            mean = sum(vals) / len(vals)
            std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
            series.append((x, mean, std, len(vals)))
        out[label] = series
    return out


def plot_summary(out_dir: Path, summary: dict, metric: str, x_key: str, n_failed: int) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    # one x axis for every line: categorical values (or a mix) get one shared ordered list of
    # positions, so a line that lacks a value (all its trials there failed) is not shifted under
    # another line's labels
    values = sorted({p[0] for series in summary.values() for p in series},
                    key=lambda v: (isinstance(v, str), v))
    numeric = all(isinstance(x, int | float) for x in values)
    position = {x: i for i, x in enumerate(values)}
    for label, series in summary.items():
        xs = [p[0] for p in series]
        pos = xs if numeric else [position[x] for x in xs]
        ax.errorbar(pos, [p[1] for p in series], yerr=[p[2] for p in series], marker="o", capsize=3,
                    label=label)
    if not numeric:
        ax.set_xticks(range(len(values)), [str(x) for x in values])
    ax.set_xlabel(x_key)
    ax.set_ylabel(f"{metric} (mean ± std over seeds)")
    title = "sweep summary" + (f" ({n_failed} failed trial(s) not shown)" if n_failed else "")
    ax.set_title(title)
    if len(summary) > 1:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out_dir / PNG
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
