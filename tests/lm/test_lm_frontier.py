"""The compute frontier (host/lm/frontier.py): run loading, envelope, power-law fit, per-mode axes, report."""

from __future__ import annotations

import json
import math
import struct
from fractions import Fraction

import numpy as np
import pytest

from host.lm import frontier as fr

# --------------------------------------------------------------------------------------------------
# helpers


def _write_run(run_dir, mode, d_model, n_blocks, records, extra_cfg=None, blank_lines=False):
    """A hand-built run directory: config.json and metrics.jsonl (one JSON record per line)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = {"mode": mode, "d_model": d_model, "n_blocks": n_blocks, **(extra_cfg or {})}
    (run_dir / "config.json").write_text(json.dumps(cfg))
    lines = [json.dumps(r) for r in records]
    sep = "\n\n   \n" if blank_lines else "\n"
    (run_dir / "metrics.jsonl").write_text(sep.join(lines) + "\n")
    return run_dir


def _points(mode, flops, device_time_s, device_energy_j, bpc, d_model=8, n_blocks=1):
    f64 = lambda v: np.array(v, dtype=np.float64)  # noqa: E731
    return fr.RunPoints(f"/runs/{mode}{d_model}", mode, d_model, n_blocks, f64(flops), f64(device_time_s),
                        f64(device_energy_j), f64(bpc))


def _two_point_law(c, loss):
    """The power law through two points, by hand: alpha = ln(L0/L1) / ln(c1/c0), a = L0 · c0^alpha."""
    alpha = math.log(loss[0] / loss[1]) / math.log(c[1] / c[0])
    return loss[0] * c[0] ** alpha, alpha


def _png_size(path):
    """Width and height from a PNG's IHDR chunk (bytes 16..24, big-endian)."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


# --------------------------------------------------------------------------------------------------
# load_run


def test_load_run_reads_every_column_as_float64_and_casts_the_label(tmp_path):
    recs = [
        {"step": 2, "flops_total": 1000, "device_time_s_total": 0.5, "device_energy_j_total": 3.0,
         "heldout_bpc": 5.0, "energy_j_total": 99.0, "wall_s_total": 7.0},
        {"step": 4, "flops_total": 2.5e9, "device_time_s_total": 1.25, "device_energy_j_total": 6.5,
         "heldout_bpc": 4.0},
        {"step": 6, "flops_total": 4e9, "device_time_s_total": 2, "device_energy_j_total": 9.75,
         "heldout_bpc": 3.5},
    ]
    d = _write_run(tmp_path / "run", "optical-dfa", 32.0, "3", recs, extra_cfg={"lr": 1e-3, "steps": 6},
                   blank_lines=True)
    rp = fr.load_run(d)  # a Path
    assert rp.run_dir == str(d) and type(rp.run_dir) is str
    assert rp.mode == "optical-dfa"
    assert rp.d_model == 32 and type(rp.d_model) is int
    assert rp.n_blocks == 3 and type(rp.n_blocks) is int
    expected = {"flops": [1000.0, 2.5e9, 4e9], "device_time_s": [0.5, 1.25, 2.0],
                "device_energy_j": [3.0, 6.5, 9.75], "bpc": [5.0, 4.0, 3.5]}
    for name, values in expected.items():
        col = getattr(rp, name)
        assert col.dtype == np.float64, name
        assert col.tolist() == values, name
    # a str path gives the same run
    assert fr.load_run(str(d)).run_dir == str(d)


def test_load_run_reads_a_missing_column_as_zero(tmp_path):
    recs = [{"flops_total": 10, "heldout_bpc": 2.0},
            {"heldout_bpc": 1.5, "device_time_s_total": 0.25},
            {"flops_total": 30, "device_energy_j_total": 0.75}]
    rp = fr.load_run(_write_run(tmp_path / "r", "bp", 16, 2, recs))
    assert rp.flops.tolist() == [10.0, 0.0, 30.0]
    assert rp.device_time_s.tolist() == [0.0, 0.25, 0.0]
    assert rp.device_energy_j.tolist() == [0.0, 0.0, 0.75]
    assert rp.bpc.tolist() == [2.0, 1.5, 0.0]
    for col in (rp.flops, rp.device_time_s, rp.device_energy_j, rp.bpc):
        assert col.dtype == np.float64


@pytest.mark.parametrize("present", [(), ("config.json",), ("metrics.jsonl",)])
def test_load_run_refuses_a_directory_without_both_files(tmp_path, present):
    d = tmp_path / "not_a_run"
    d.mkdir()
    for name in present:
        (d / name).write_text('{"mode": "bp", "d_model": 8, "n_blocks": 1}\n' if name == "config.json"
                              else '{"flops_total": 1, "heldout_bpc": 1}\n')
    with pytest.raises(fr.FrontierError) as err:
        fr.load_run(d)
    assert str(err.value) == f"{d} is not a Transformer run directory (needs config.json and metrics.jsonl)"


@pytest.mark.parametrize("metrics", [
    "",                                                         # empty
    "\n   \n\n",                                                # blank lines only
    '{"step": 2, "heldout_bpc": 3.0}\n',                        # one record, no compute column
    '{"heldout_bpc": 3.0}\n{"flops_total": 5, "heldout_bpc": 2.0}\n',  # the first record decides
])
def test_load_run_refuses_metrics_without_compute_columns(tmp_path, metrics):
    d = tmp_path / "classifier_run"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"mode": "bp", "d_model": 8, "n_blocks": 1}))
    (d / "metrics.jsonl").write_text(metrics)
    with pytest.raises(fr.FrontierError) as err:
        fr.load_run(d)
    assert str(err.value) == f"{d}: metrics.jsonl holds no compute columns (not a Transformer run?)"


# --------------------------------------------------------------------------------------------------
# RunPoints and PowerLaw


def test_run_points_time_and_energy_add_host_and_device_terms():
    # binary-exact values: time = flops / rate + device time, energy = flops · J/FLOP + device energy
    rp = _points("dfa", [2.0, 6.0], [0.25, 1.5], [0.5, 3.0], [4.0, 3.0])
    assert rp.time_s(4.0).tolist() == [0.75, 3.0]  # [2/4 + 0.25, 6/4 + 1.5]
    assert rp.energy_j(0.5).tolist() == [1.5, 6.0]  # [2·0.5 + 0.5, 6·0.5 + 3]


def test_power_law_evaluates_a_times_c_to_the_minus_alpha():
    law = fr.PowerLaw(a=3.0, alpha=0.5, n_points=2, r2=1.0)
    assert law(np.array([4.0, 16.0, 1.0])).tolist() == [1.5, 0.75, 3.0]
    # an integer exponent on integer compute: the float64 cast keeps negative powers legal
    inv = fr.PowerLaw(a=2.0, alpha=1, n_points=2, r2=1.0)
    out = inv([1, 2, 4])
    assert out.dtype == np.float64 and out.tolist() == [2.0, 1.0, 0.5]


# --------------------------------------------------------------------------------------------------
# lower_envelope


def test_lower_envelope_resolves_ties_and_keeps_only_strict_improvements():
    # sorted by (compute, loss): (1,5.0)#1 keep; (2,2.0)#2 keep; (2,3.0)#0 same compute, higher loss: drop;
    # (3,1.0)#4 keep; (3,2.0)#3 drop; (4,1.0)#5 equal to the best so far: drop (strict <)
    compute = np.array([2.0, 1.0, 2.0, 3.0, 3.0, 4.0])
    loss = np.array([3.0, 5.0, 2.0, 2.0, 1.0, 1.0])
    env = fr.lower_envelope(compute, loss)
    assert env.dtype == np.int64
    assert env.tolist() == [1, 2, 4]  # in increasing compute


def test_lower_envelope_excludes_points_without_positive_compute():
    compute = np.array([0.0, -1.0, 1.0, 2.0, 0.5])
    loss = np.array([0.5, 0.1, 3.0, 2.0, 4.0])
    assert fr.lower_envelope(compute, loss).tolist() == [4, 2, 3]
    empty = fr.lower_envelope(np.array([0.0, -2.0]), np.array([1.0, 0.5]))
    assert empty.dtype == np.int64 and empty.shape == (0,)


# --------------------------------------------------------------------------------------------------
# fit_power_law


def test_fit_power_law_recovers_an_exact_law_and_drops_non_positive_points():
    # L = 7.5 · C^-0.25 at C = 1, 1e2, 1e4, 1e6 (losses 7.5 ... 0.237): a and alpha exact, r2 = 1
    c = np.array([1.0, 1e2, 1e4, 1e6])
    loss = 7.5 * c**-0.25
    law = fr.fit_power_law(c, loss)
    assert law.a == pytest.approx(7.5, rel=1e-12) and law.alpha == pytest.approx(0.25, rel=1e-12)
    assert law.n_points == 4 and law.r2 == pytest.approx(1.0, abs=1e-12)
    # points with C <= 0 or L <= 0 are dropped before the fit (and not counted)
    c_bad = np.concatenate([c, [0.0, -1.0, 10.0, 10.0]])
    loss_bad = np.concatenate([loss, [5.0, 5.0, 0.0, -1.0]])
    law = fr.fit_power_law(list(c_bad), list(loss_bad))
    assert law.a == pytest.approx(7.5, rel=1e-12) and law.alpha == pytest.approx(0.25, rel=1e-12)
    assert law.n_points == 4 and type(law.n_points) is int


@pytest.mark.parametrize(("alpha", "r2"), [(0.5, 25 / 26), (0.1, 1 / 2)])
def test_fit_power_law_r2_on_known_residuals(alpha, r2):
    # log C = x = 0..4, log L = ln 2 - alpha·x + e with e orthogonal to 1 and x: the least-squares line
    # is exactly (ln 2, -alpha) and the residuals are e; Σe² = 0.01·10 = 0.1 and
    # Σ(y - ȳ)² = alpha²·Σ(x - 2)² + Σe² = 10·alpha² + 0.1, so r2 = 1 - 0.1 / 2.6 = 25/26 (alpha 0.5)
    # and 1 - 0.1 / 0.2 = 1/2 (alpha 0.1)
    x = np.arange(5.0)
    e = 0.1 * np.array([1.0, -2.0, 0.0, 2.0, -1.0])
    assert e.sum() == pytest.approx(0.0, abs=1e-15) and (x * e).sum() == pytest.approx(0.0, abs=1e-15)
    y = math.log(2.0) - alpha * x + e
    law = fr.fit_power_law(np.exp(x), np.exp(y))
    assert law.a == pytest.approx(2.0, rel=1e-12) and law.alpha == pytest.approx(alpha, rel=1e-12)
    assert law.n_points == 5
    assert law.r2 == pytest.approx(r2, rel=1e-12)
    assert law.r2 == pytest.approx(np.corrcoef(x, y)[0, 1] ** 2, rel=1e-12)  # r² of a line = corr²


def test_fit_power_law_takes_python_numbers_as_float64():
    # FLOP counts beyond int64 as Python ints and exact rational losses: L = 1e21 / C (a = 1e21, alpha = 1)
    c = [10**19, 10**20, 10**21]
    loss = [Fraction(10**21, ci) for ci in c]  # 100, 10, 1
    law = fr.fit_power_law(c, loss)
    assert law.a == pytest.approx(1e21, rel=1e-12) and law.alpha == pytest.approx(1.0, rel=1e-12)
    assert law.n_points == 3


def test_fit_power_law_needs_two_distinct_compute_values():
    # exactly two distinct compute values suffice (one duplicated): the line through them
    law = fr.fit_power_law(np.array([4.0, 16.0, 16.0]), np.array([1.5, 0.75, 0.75]))  # 3 · C^-0.5
    assert law.a == pytest.approx(3.0, rel=1e-12) and law.alpha == pytest.approx(0.5, rel=1e-12)
    assert law.n_points == 3
    # fewer: the message counts the points kept after dropping C <= 0 and L <= 0
    for c, loss, n in [([5.0, 5.0, 5.0, 0.0], [1.0, 2.0, 3.0, 4.0], 3),
                       ([5.0, 6.0], [1.0, 0.0], 1),
                       ([], [], 0)]:
        with pytest.raises(fr.FrontierError) as err:
            fr.fit_power_law(np.array(c), np.array(loss))
        assert str(err.value) == f"a power-law fit needs points at 2 or more compute values, got {n}"


def test_fit_power_law_on_a_flat_loss_has_r2_one_and_no_slope():
    # all log L equal: Σ(y - ȳ)² = 0, r2 is defined as 1 and the exponent is 0
    law = fr.fit_power_law(np.array([1.0, 10.0, 100.0]), np.array([2.5, 2.5, 2.5]))
    assert law.r2 == 1.0
    assert law.alpha == pytest.approx(0.0, abs=1e-12) and law.a == pytest.approx(2.5, rel=1e-12)
    assert law.n_points == 3


# --------------------------------------------------------------------------------------------------
# frontier_by_mode

RATE, JPF = 2.0, 0.25  # non-default host assumptions, binary-exact


def _mode_runs():
    return [
        _points("dfa", [1.0, 4.0], [0.5, 0.25], [2.0, 1.0], [4.0, 2.0], d_model=16),
        _points("bp", [16.0], [0.0], [0.0], [1.0]),
        _points("dfa", [2.0, 8.0], [0.0, 1.0], [0.5, 0.5], [5.0, 2.5], d_model=32),
        _points("shallow", [0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [3.0, 2.0]),
    ]


# per axis, for mode dfa (points in run order: run 1 then run 2), computed by hand:
#   flops : [1, 4, 2, 8]
#   time  : flops / 2 + device time    = [1.0, 2.25, 1.0, 5.0]
#   energy: flops · 0.25 + device energy = [2.25, 2.0, 1.0, 2.5]
# loss [4, 2, 5, 2.5]; envelopes (sorted by compute, strict improvement):
#   flops : (1,4)#0 (2,5)x (4,2)#1 (8,2.5)x          -> [0, 1]
#   time  : (1,4)#0 (1,5)x (2.25,2)#1 (5,2.5)x       -> [0, 1]
#   energy: (1,5)#2 (2,2)#1 (2.25,4)x (2.5,2.5)x     -> [2, 1]
DFA_AXES = {
    "flops": ([1.0, 4.0, 2.0, 8.0], [0, 1]),
    "time": ([1.0, 2.25, 1.0, 5.0], [0, 1]),
    "energy": ([2.25, 2.0, 1.0, 2.5], [2, 1]),
}


@pytest.mark.parametrize("axis", ["flops", "time", "energy"])
def test_frontier_by_mode_per_axis(axis):
    out = fr.frontier_by_mode(_mode_runs(), axis, host_flops_per_s=RATE, host_joule_per_flop=JPF)
    assert list(out) == ["bp", "dfa", "shallow"]
    compute, env = DFA_AXES[axis]
    dfa = out["dfa"]
    assert set(dfa) == {"compute", "loss", "envelope", "law"}
    assert dfa["compute"].tolist() == compute
    assert dfa["loss"].tolist() == [4.0, 2.0, 5.0, 2.5]
    assert dfa["envelope"].tolist() == env
    a, alpha = _two_point_law([compute[i] for i in env], [[4.0, 2.0, 5.0, 2.5][i] for i in env])
    law = dfa["law"]
    assert law.a == pytest.approx(a, rel=1e-12) and law.alpha == pytest.approx(alpha, rel=1e-12)
    assert law.n_points == 2 and law.r2 == pytest.approx(1.0, abs=1e-12)
    # bp: one point (16 FLOPs, no device) -> an envelope of one point, no law
    bp_c = {"flops": 16.0, "time": 16.0 / RATE, "energy": 16.0 * JPF}[axis]
    assert out["bp"]["compute"].tolist() == [bp_c] and out["bp"]["envelope"].tolist() == [0]
    assert out["bp"]["law"] is None
    # shallow: no positive compute on any axis -> an empty envelope, no law
    assert out["shallow"]["compute"].tolist() == [0.0, 0.0] and out["shallow"]["loss"].tolist() == [3.0, 2.0]
    assert out["shallow"]["envelope"].tolist() == [] and out["shallow"]["law"] is None


def test_frontier_by_mode_defaults_are_flops_and_the_module_host_assumptions():
    runs = _mode_runs()
    assert fr.frontier_by_mode(runs)["dfa"]["compute"].tolist() == [1.0, 4.0, 2.0, 8.0]
    flops = np.array([1.0, 4.0, 2.0, 8.0])
    t = fr.frontier_by_mode(runs, "time")["dfa"]["compute"]
    assert t == pytest.approx(flops / 5e10 + np.array([0.5, 0.25, 0.0, 1.0]), rel=1e-15)
    en = fr.frontier_by_mode(runs, "energy")["dfa"]["compute"]
    assert en == pytest.approx(flops * 1e-10 + np.array([2.0, 1.0, 0.5, 0.5]), rel=1e-15)
    assert fr.DEFAULT_HOST_FLOPS_PER_S == 5e10 and fr.DEFAULT_HOST_JOULE_PER_FLOP == 1e-10


def test_frontier_by_mode_sorts_modes():
    modes = ["zeta", "eta", "delta", "gamma", "beta", "alpha"]
    runs = [_points(m, [1.0], [0.0], [0.0], [1.0]) for m in modes]
    assert list(fr.frontier_by_mode(runs)) == sorted(modes)


def test_frontier_by_mode_refuses_an_unknown_axis():
    with pytest.raises(fr.FrontierError) as err:
        fr.frontier_by_mode(_mode_runs(), "wall")
    assert str(err.value) == "unknown axis 'wall'; choose flops, time or energy"


# --------------------------------------------------------------------------------------------------
# report

A, ALPHA = 6.0, 0.2  # every dfa point lies on L = 6 · FLOPs^-0.2
KT, KE = 1e-9, 3e-11  # device time and energy proportional to FLOPs (s/FLOP, J/FLOP)
DFA_FLOPS = ([1e6, 1e7, 1e8], [3e6, 3e7, 3e8, 3e9])
BP_POINT = {"flops_total": 5e7, "device_time_s_total": 0.0, "device_energy_j_total": 0.0, "heldout_bpc": 2.75}


def _report_runs(root):
    dirs, bpcs = [], []
    for i, flops in enumerate(DFA_FLOPS):
        recs = [{"flops_total": f, "device_time_s_total": KT * f, "device_energy_j_total": KE * f,
                 "heldout_bpc": A * f**-ALPHA} for f in flops]
        dirs.append(_write_run(root / f"dfa{i}", "dfa", 16 * (i + 1), 2 + i, recs))
        bpcs.append(recs[-1]["heldout_bpc"])
    dirs.append(_write_run(root / "bp", "bp", 8, 1, [BP_POINT]))
    return dirs, bpcs


def _expected_laws(rate, jpf):
    """With time = k·FLOPs (k = 1/rate + KT): L = A·(T/k)^-α = A·k^α·T^-α; energy likewise with jpf + KE."""
    return {"flops": A, "time": A * (1.0 / rate + KT) ** ALPHA, "energy": A * (jpf + KE) ** ALPHA}


def _check_summary(summary, dirs, bpcs, rate, jpf):
    assert summary["assumptions"] == {"host_flops_per_s": rate, "host_joule_per_flop": jpf}
    assert summary["runs"] == [
        {"dir": str(dirs[0]), "mode": "dfa", "d_model": 16, "n_blocks": 2, "final_bpc": bpcs[0]},
        {"dir": str(dirs[1]), "mode": "dfa", "d_model": 32, "n_blocks": 3, "final_bpc": bpcs[1]},
        {"dir": str(dirs[2]), "mode": "bp", "d_model": 8, "n_blocks": 1, "final_bpc": 2.75},
    ]
    for ax, a in _expected_laws(rate, jpf).items():
        assert list(summary[ax]) == ["bp", "dfa"], ax
        assert summary[ax]["bp"] is None, ax
        law = summary[ax]["dfa"]
        assert set(law) == {"a", "alpha", "n_points", "r2"}, ax
        assert law["a"] == pytest.approx(a, rel=1e-9), ax
        assert law["alpha"] == pytest.approx(ALPHA, rel=1e-9), ax
        assert law["n_points"] == 7 and law["r2"] == pytest.approx(1.0, abs=1e-12), ax
    assert json.loads(json.dumps(summary)) == summary  # JSON-ready


def test_report_with_explicit_host_assumptions(tmp_path):
    dirs, bpcs = _report_runs(tmp_path)
    rate, jpf = 2e9, 4e-11
    summary = fr.report((d for d in dirs), host_flops_per_s=rate, host_joule_per_flop=jpf)
    assert set(summary) == {"assumptions", "runs", "flops", "time", "energy"}  # no png without out_png
    _check_summary(summary, dirs, bpcs, rate, jpf)
    # the assumptions matter: the time and energy prefactors differ from the default ones
    assert summary["time"]["dfa"]["a"] != pytest.approx(_expected_laws(5e10, 1e-10)["time"], rel=1e-3)
    assert summary["energy"]["dfa"]["a"] != pytest.approx(_expected_laws(5e10, 1e-10)["energy"], rel=1e-3)


def test_report_with_default_host_assumptions(tmp_path):
    dirs, bpcs = _report_runs(tmp_path)
    summary = fr.report(dirs)
    assert "png" not in summary
    _check_summary(summary, dirs, bpcs, 5e10, 1e-10)


def test_report_refuses_no_runs_and_non_runs(tmp_path):
    with pytest.raises(fr.FrontierError) as err:
        fr.report([])
    assert str(err.value) == "no run directories given"
    with pytest.raises(fr.FrontierError) as err:
        fr.report([tmp_path])
    assert str(err.value) == (f"{tmp_path} is not a Transformer run directory "
                              "(needs config.json and metrics.jsonl)")


def test_report_draws_the_three_panels(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    real_close, figs = plt.close, []
    monkeypatch.setattr(plt, "close", figs.append)  # keep the figure _draw closes, to inspect it
    dirs, bpcs = _report_runs(tmp_path / "runs")
    rate, jpf = 2e9, 4e-11
    png = tmp_path / "plots" / "lm" / "frontier.png"  # parent folders do not exist yet
    summary = fr.report(dirs, png, host_flops_per_s=rate, host_joule_per_flop=jpf)
    assert summary["png"] == str(png)
    assert set(summary) == {"assumptions", "runs", "flops", "time", "energy", "png"}
    _check_summary({k: v for k, v in summary.items() if k != "png"}, dirs, bpcs, rate, jpf)
    assert png.stat().st_size > 10_000
    assert _png_size(png) == (15 * 110, 4 * 110)  # figsize (15, 4) in at 110 dpi
    # a second picture into the now existing folder, named by a str
    png2 = tmp_path / "plots" / "lm" / "again.png"
    assert fr.report(dirs, str(png2))["png"] == str(png2)
    assert png2.stat().st_size > 10_000

    try:
        fig = figs[0]
        assert tuple(fig.get_size_inches()) == (15.0, 4.0)
        axes = fig.axes
        # three panels side by side, in one row
        assert [ax.get_subplotspec().get_geometry() for ax in axes] == [(1, 3, k, k) for k in range(3)]
        assert [ax.get_xlabel() for ax in axes] == ["digital FLOPs",
                                                    "modeled time (s): host FLOPs + device frames",
                                                    "modeled energy (J): host + device"]
        # per panel, the dfa points' compute by hand: FLOPs, FLOPs·(1/rate + KT), FLOPs·(jpf + KE)
        flops = np.array(DFA_FLOPS[0] + DFA_FLOPS[1])
        scale = {0: 1.0, 1: 1.0 / rate + KT, 2: jpf + KE}
        dfa_loss = A * flops**-ALPHA
        for k, ax in enumerate(axes):
            assert ax.get_ylabel() == "held-out bits per character"
            assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
            for tick in (ax.xaxis.get_major_ticks()[0], ax.xaxis.get_minor_ticks()[0]):
                assert tick.gridline.get_visible() and tick.gridline.get_alpha() == 0.3
            bp_sc, dfa_sc = ax.collections  # modes in sorted order
            for sc in (bp_sc, dfa_sc):
                assert sc.get_sizes().tolist() == [10.0] and sc.get_alpha() == 0.35
            bp_c = {0: 5e7, 1: 5e7 / rate, 2: 5e7 * jpf}[k]
            assert np.asarray(bp_sc.get_offsets()) == pytest.approx(np.array([[bp_c, 2.75]]), rel=1e-12)
            assert np.asarray(dfa_sc.get_offsets()) == pytest.approx(
                np.column_stack([flops * scale[k], dfa_loss]), rel=1e-12)
            bp_env, bp_legend, dfa_env, dfa_fit = ax.lines
            for line, sc in ((bp_env, bp_sc), (bp_legend, bp_sc), (dfa_env, dfa_sc), (dfa_fit, dfa_sc)):
                assert np.allclose(line.get_color(), sc.get_facecolor()[0])
            for env_line in (bp_env, dfa_env):
                assert env_line.get_marker() == "o" and env_line.get_markersize() == 4
                assert env_line.get_linestyle() == "None"
            assert bp_env.get_xdata().tolist() == pytest.approx([bp_c], rel=1e-12)
            # every dfa point is on the envelope, in increasing compute
            order = np.argsort(flops)
            assert np.asarray(dfa_env.get_xdata()) == pytest.approx(flops[order] * scale[k], rel=1e-12)
            assert np.asarray(dfa_env.get_ydata()) == pytest.approx(dfa_loss[order], rel=1e-12)
            assert len(bp_legend.get_xdata()) == 0 and bp_legend.get_label() == "bp"
            # the fitted law on 50 log-spaced points between the envelope's ends
            cs = np.geomspace(1e6 * scale[k], 3e9 * scale[k], 50)
            a_k = _expected_laws(rate, jpf)[["flops", "time", "energy"][k]]
            assert dfa_fit.get_linestyle() == "-" and dfa_fit.get_label() == "dfa: α=0.200"
            assert np.asarray(dfa_fit.get_xdata()) == pytest.approx(cs, rel=1e-9)
            assert np.asarray(dfa_fit.get_ydata()) == pytest.approx(a_k * cs**-ALPHA, rel=1e-9)
            legend = ax.get_legend()
            assert [t.get_text() for t in legend.get_texts()] == ["bp", "dfa: α=0.200"]
            assert all(t.get_fontsize() == 7 for t in legend.get_texts())
    finally:
        for f in figs:
            real_close(f)
