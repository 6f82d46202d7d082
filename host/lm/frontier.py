"""The compute frontier: held-out loss against digital FLOPs and against modeled time/energy.

Input: run directories of :func:`host.lm.train.train_lm` (a small sweep over model sizes and modes).
Each metrics line is one point (cumulative compute, held-out bits per character).

Axes
----
(a) digital FLOPs (``flops_total``, :mod:`host.lm.flops`): what a digital accelerator executes;
    optical-dfa's random projection is not among them.
(b) modeled time and energy with the OPU doing the feedback::

        time   = flops_total / host_flops_per_s + device_time_s_total
        energy = flops_total × host_joule_per_flop + device_energy_j_total

    ``host_flops_per_s`` and ``host_joule_per_flop`` are explicit assumptions (arguments, written
    into the report); device time and energy come from the device's own clock (frames × frame
    time; × its electrical power). The device is assumed not to overlap with host compute (an
    upper bound on optical-dfa's time; with perfect overlap the time would be the max of the two).

Fit (per mode)
--------------
The frontier is the lower envelope of all points of a mode: a point belongs to it when every point
with less or equal compute has a higher loss (of equal-loss points only the cheapest is kept). A power
law ``L = a · C^(−α)`` is fitted to the frontier points by least squares on ``log L`` vs ``log C``
(Kaplan et al. 2020 eq. 1.4 without the irreducible term, which a CPU-sized sweep cannot resolve);
``α`` is the reported exponent.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: default host assumptions of axis (b): a 2-core CPU's measured matmul rate order of magnitude and
#: ~1e-10 J/FLOP (10 GFLOP/J, a server CPU's efficiency order of magnitude); both are arguments
DEFAULT_HOST_FLOPS_PER_S = 5e10
DEFAULT_HOST_JOULE_PER_FLOP = 1e-10


class FrontierError(ValueError):
    """Runs that cannot be put on one frontier (the message names the run and the problem)."""


@dataclass(frozen=True)
class RunPoints:
    """One run's points: its label (mode, size), cumulative compute columns and held-out bpc."""

    run_dir: str
    mode: str
    d_model: int
    n_blocks: int
    flops: np.ndarray
    device_time_s: np.ndarray
    device_energy_j: np.ndarray
    bpc: np.ndarray

    def time_s(self, host_flops_per_s: float) -> np.ndarray:
        return self.flops / host_flops_per_s + self.device_time_s

    def energy_j(self, host_joule_per_flop: float) -> np.ndarray:
        return self.flops * host_joule_per_flop + self.device_energy_j


@dataclass(frozen=True)
class PowerLaw:
    """``L = a · C^(−alpha)`` fitted on ``n_points`` frontier points (``r2`` of the log-log fit)."""

    a: float
    alpha: float
    n_points: int
    r2: float

    def __call__(self, c: np.ndarray) -> np.ndarray:
        return self.a * np.asarray(c, dtype=np.float64) ** (-self.alpha)


def load_run(run_dir: str | Path) -> RunPoints:
    """Points of one run directory (``config.json`` and ``metrics.jsonl``)."""
    d = Path(run_dir)
    cfg_p, met_p = d / "config.json", d / "metrics.jsonl"
    if not cfg_p.is_file() or not met_p.is_file():
        raise FrontierError(f"{d} is not a Transformer run directory (needs config.json and metrics.jsonl)")
    cfg = json.loads(cfg_p.read_text())
    recs = [json.loads(line) for line in met_p.read_text().splitlines() if line.strip()]
    if not recs or "flops_total" not in recs[0]:
        raise FrontierError(f"{d}: metrics.jsonl holds no compute columns (not a Transformer run?)")
    col = lambda k: np.array([float(r.get(k, 0.0)) for r in recs], dtype=np.float64)  # noqa: E731
    return RunPoints(str(d), cfg["mode"], int(cfg["d_model"]), int(cfg["n_blocks"]), col("flops_total"),
                     col("device_time_s_total"), col("device_energy_j_total"), col("heldout_bpc"))


def lower_envelope(compute: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """Indices of the points on the lower envelope (every other cheaper-or-equal point has a higher loss;
    of identical points the first), in increasing compute."""
    order = np.lexsort((loss, compute))
    keep, best = [], math.inf
    for i in order:
        if compute[i] > 0 and loss[i] < best:
            keep.append(i)
            best = loss[i]
    return np.array(keep, dtype=np.int64)


def fit_power_law(compute: np.ndarray, loss: np.ndarray) -> PowerLaw:
    """Least squares of ``log L = log a − α log C`` on the given points (at least 2 distinct C)."""
    c, l_ = np.asarray(compute, np.float64), np.asarray(loss, np.float64)
    ok = (c > 0) & (l_ > 0)
    c, l_ = c[ok], l_[ok]
    if np.unique(c).size < 2:
        raise FrontierError(f"a power-law fit needs points at 2 or more compute values, got {c.size}")
    x, y = np.log(c), np.log(l_)
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - (intercept + slope * x)
    ss = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((resid**2).sum()) / ss if ss > 0 else 1.0
    return PowerLaw(float(math.exp(intercept)), float(-slope), int(c.size), r2)


def frontier_by_mode(runs: Sequence[RunPoints], axis: str = "flops",
                     host_flops_per_s: float = DEFAULT_HOST_FLOPS_PER_S,
                     host_joule_per_flop: float = DEFAULT_HOST_JOULE_PER_FLOP) -> dict[str, dict]:
    """Per mode: all points, the envelope points and the power law on ``axis`` (flops/time/energy)."""
    out: dict[str, dict] = {}
    for mode in sorted({r.mode for r in runs}):
        rs = [r for r in runs if r.mode == mode]
        if axis == "flops":
            c = np.concatenate([r.flops for r in rs])
        elif axis == "time":
            c = np.concatenate([r.time_s(host_flops_per_s) for r in rs])
        elif axis == "energy":
            c = np.concatenate([r.energy_j(host_joule_per_flop) for r in rs])
        else:
            raise FrontierError(f"unknown axis {axis!r}; choose flops, time or energy")
        loss = np.concatenate([r.bpc for r in rs])
        env = lower_envelope(c, loss)
        law = fit_power_law(c[env], loss[env]) if np.unique(c[env]).size >= 2 else None
        out[mode] = {"compute": c, "loss": loss, "envelope": env, "law": law}
    return out


def report(run_dirs: Iterable[str | Path], out_png: str | Path | None = None,
           host_flops_per_s: float = DEFAULT_HOST_FLOPS_PER_S,
           host_joule_per_flop: float = DEFAULT_HOST_JOULE_PER_FLOP) -> dict:
    """Fit every axis, draw the three panels to ``out_png`` and return a JSON-ready summary."""
    runs = [load_run(d) for d in run_dirs]
    if not runs:
        raise FrontierError("no run directories given")
    summary: dict = {"assumptions": {"host_flops_per_s": host_flops_per_s,
                                     "host_joule_per_flop": host_joule_per_flop},
                     "runs": [{"dir": r.run_dir, "mode": r.mode, "d_model": r.d_model, "n_blocks": r.n_blocks,
                               "final_bpc": float(r.bpc[-1])} for r in runs]}
    fits = {ax: frontier_by_mode(runs, ax, host_flops_per_s, host_joule_per_flop)
            for ax in ("flops", "time", "energy")}
    for ax, per_mode in fits.items():
        summary[ax] = {m: ({"a": v["law"].a, "alpha": v["law"].alpha, "n_points": v["law"].n_points,
                            "r2": v["law"].r2} if v["law"] else None) for m, v in per_mode.items()}
    if out_png is not None:
        _draw(fits, Path(out_png))
        summary["png"] = str(out_png)
    return summary


def _draw(fits: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    labels = {"flops": "digital FLOPs", "time": "modeled time (s): host FLOPs + device frames",
              "energy": "modeled energy (J): host + device"}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, (name, per_mode) in zip(axes, fits.items(), strict=True):
        for mode, v in per_mode.items():
            sc = ax.scatter(v["compute"], v["loss"], s=10, alpha=0.35)
            env = v["envelope"]
            ax.plot(v["compute"][env], v["loss"][env], "o", color=sc.get_facecolor()[0], ms=4)
            if v["law"] is not None:
                cs = np.geomspace(v["compute"][env].min(), v["compute"][env].max(), 50)
                ax.plot(cs, v["law"](cs), "-", color=sc.get_facecolor()[0],
                        label=f"{mode}: α={v['law'].alpha:.3f}")
            else:
                ax.plot([], [], color=sc.get_facecolor()[0], label=mode)
        ax.set(xscale="log", yscale="log", xlabel=labels[name], ylabel="held-out bits per character")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
