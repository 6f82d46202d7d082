"""The report plots (host/calibration/plots.py) of a hand-made report: one PNG per measurement at the
documented paths, and in each figure the data of the report, the model curves of the documented
formulas (photon transfer line, EMVA 1288 SNR, stability decay), axis labels, titles, line styles and
legends. The figures are kept by wrapping the module's save helper (the PNGs are still written).
"""

from __future__ import annotations

import math
import struct

import matplotlib.pyplot as plt
import numpy as np
import pytest
from cal_fakes import synthetic_report
from matplotlib.colors import same_color

from host.calibration import plots
from host.calibration.report import fig

ALL = ["photon_transfer.png", "snr.png", "linearity.png", "dark.png", "stability.png", "linear_snr.png"]


@pytest.fixture
def render(monkeypatch, tmp_path):
    """render(report, write=False) -> (returned paths, {file name: matplotlib Figure}); the PNGs are
    written (by the module's own helper) only with ``write`` (rendering them is the slow part)."""
    kept = {}
    save = plots._save

    def keep(figure, path):
        kept[path.name] = figure
        if writing:
            return save(figure, path)
        plt.close(figure)
        return path

    monkeypatch.setattr(plots, "_save", keep)
    writing = False

    def run(report, write=False):
        nonlocal writing
        writing = write
        kept.clear()
        return plots.plot_report(report, tmp_path), dict(kept)

    return run


def _lines(ax):
    """Labelled lines of an axes by label (errorbar data lines are found through their container)."""
    out = {ln.get_label(): ln for ln in ax.get_lines() if not ln.get_label().startswith("_")}
    for cont in ax.containers:
        out[cont.get_label()] = cont.lines[0]
    return out


def _xy(line):
    return np.asarray(line.get_xdata(), dtype=float), np.asarray(line.get_ydata(), dtype=float)


def _style(line):
    return line.get_linestyle(), line.get_marker()


def _legend(ax):
    leg = ax.get_legend()
    assert leg is not None
    return [t.get_text() for t in leg.get_texts()], {t.get_fontsize() for t in leg.get_texts()}


def test_every_plot_is_written_and_returned(render, tmp_path):
    paths, figs = render(synthetic_report(), write=True)
    assert paths == [tmp_path / name for name in ALL]
    for p in paths:
        head = p.read_bytes()[:24]
        assert head[:8] == b"\x89PNG\r\n\x1a\n"
        # written at 110 dpi: the PNG's width and height (its IHDR chunk) are the figure's inches x 110
        w_in, h_in = figs[p.name].get_size_inches()
        assert struct.unpack(">II", head[16:24]) == (round(w_in * 110), round(h_in * 110)), p.name
    assert sorted(figs) == sorted(ALL)


def test_photon_transfer_plot(render):
    r = synthetic_report()
    p = r.photon_transfer
    _, figs = render(r)
    (ax,) = figs["photon_transfer.png"].axes
    assert ax.get_xlabel() == "mu_y - mu_y.dark (DN)"
    assert ax.get_ylabel() == "sigma_y^2 (DN^2)"
    assert ax.get_title() == "Photon transfer"
    lines = _lines(ax)
    pts = lines["binned per-pixel temporal variance"]
    np.testing.assert_allclose(pts.get_xdata(), p.bin_signal_dn)
    np.testing.assert_allclose(pts.get_ydata(), p.bin_var_dn2)
    assert _style(pts) == ("None", "o")
    fit_line = lines["fit K = 0.2 DN/e-"]
    assert _style(fit_line) == ("-", "None")
    xx = np.linspace(0, 400.0, 200)
    np.testing.assert_allclose(fit_line.get_xdata(), xx)
    np.testing.assert_allclose(fit_line.get_ydata(), 0.2 * xx + 0.3)  # sigma^2 = K x + c
    fit_max = lines["70 % of saturation"]
    assert _style(fit_max)[0] == ":" and same_color(fit_max.get_color(), "gray")
    assert fit_max.get_xdata()[0] == 560.0
    sat = lines["saturation"]
    assert _style(sat)[0] == "--" and same_color(sat.get_color(), "r") and sat.get_xdata()[0] == 800.0
    texts, sizes = _legend(ax)
    assert texts == ["fit K = 0.2 DN/e-", "70 % of saturation", "saturation",
                     "binned per-pixel temporal variance"]
    assert sizes == {8.0}


def test_photon_transfer_plot_without_saturation(render):
    r = synthetic_report()
    r.photon_transfer.saturation_dn = fig(None, None, "DN", note="not reached")
    _, figs = render(r)
    (ax,) = figs["photon_transfer.png"].axes
    assert "saturation" not in _lines(ax)


def _snr_model(e, read_e, k):
    """EMVA 1288: SNR = mu_e / sqrt(mu_e + sigma_d^2 + sigma_q^2 / K^2), sigma_q^2 = 1/12 DN^2."""
    return e / np.sqrt(e + read_e**2 + 1.0 / (12 * k * k))


@pytest.mark.parametrize("first_dn, start_e", [(0.5, 2.5), (0.1, 0.5), (0.001, 0.01)])
def test_snr_plot(render, first_dn, start_e):
    """The model curve spans the measured signals in electrons (from 0.01 e- at the least)."""
    r = synthetic_report()
    x = np.array(r.photon_transfer.bin_signal_dn)
    x[0] = first_dn
    r.photon_transfer.bin_signal_dn = x.tolist()
    _, figs = render(r)
    (ax,) = figs["snr.png"].axes
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
    assert ax.get_xlabel() == "signal (e-)" and ax.get_ylabel() == "SNR"
    assert ax.get_title() == "Signal-to-noise ratio"
    lines = _lines(ax)
    measured = lines["measured"]
    assert _style(measured) == ("None", "o")
    np.testing.assert_allclose(measured.get_xdata(), x / 0.2)
    np.testing.assert_allclose(measured.get_ydata(), x / np.sqrt(r.photon_transfer.bin_var_dn2))
    model = lines["EMVA model"]
    assert _style(model) == ("-", "None")
    e = model.get_xdata()
    assert len(e) == 200
    assert e[0] == pytest.approx(start_e) and e[-1] == pytest.approx(400.0 / 0.2)
    np.testing.assert_allclose(np.diff(np.log(e)), math.log(e[-1] / e[0]) / 199)  # geometric spacing
    np.testing.assert_allclose(model.get_ydata(), _snr_model(e, 3.1, 0.2))
    ideal = lines["ideal (shot noise only)"]
    assert _style(ideal) == (":", "None") and same_color(ideal.get_color(), "gray")
    np.testing.assert_allclose(ideal.get_ydata(), np.sqrt(e))
    assert _legend(ax)[1] == {8.0}


def test_snr_plot_without_a_read_noise(render):
    r = synthetic_report()
    r.dark.read_noise_e = None
    _, figs = render(r)
    model = _lines(figs["snr.png"].axes[0])["EMVA model"]
    np.testing.assert_allclose(model.get_ydata(), _snr_model(model.get_xdata(), 0.0, 0.2))


def test_linearity_plot(render):
    r = synthetic_report()
    _, figs = render(r)
    (ax,) = figs["linearity.png"].axes
    assert ax.get_xlabel() == "signal (% of saturation)"
    assert ax.get_ylabel() == "deviation from linearity (%)"
    assert ax.get_title() == "Linearity"
    data, zero = ax.get_lines()
    assert _style(data) == ("-", "o")
    np.testing.assert_allclose(data.get_xdata(), r.photon_transfer.linearity_levels_pct)
    np.testing.assert_allclose(data.get_ydata(), r.photon_transfer.linearity_deviation_pct)
    assert list(zero.get_ydata()) == [0, 0] and same_color(zero.get_color(), "gray")
    assert zero.get_linewidth() == 0.8


def test_dark_plot(render):
    r = synthetic_report()
    d = r.dark
    _, figs = render(r)
    f = figs["dark.png"]
    assert f.get_suptitle() == "Dark"
    ax_mean, ax_var = f.axes
    assert ax_mean.get_ylabel() == "mean dark value (DN)"
    assert ax_var.get_ylabel() == "temporal dark variance (DN^2)"
    for ax, op, boost in ((ax_mean, d.mean_dn, d.boost_mean_dn), (ax_var, d.temporal_var_dn2,
                                                                  d.boost_temporal_var_dn2)):
        assert ax.get_xscale() == "log" and ax.get_xlabel() == "exposure (us)"
        lines = _lines(ax)
        assert _style(lines["operating gain"]) == ("-", "o")
        np.testing.assert_allclose(lines["operating gain"].get_xdata(), d.exposures_us)
        np.testing.assert_allclose(lines["operating gain"].get_ydata(), op)
        assert _style(lines["24 dB"]) == ("-", "s")
        np.testing.assert_allclose(lines["24 dB"].get_xdata(), d.boost_exposures_us)
        np.testing.assert_allclose(lines["24 dB"].get_ydata(), boost)
        assert _legend(ax) == (["operating gain", "24 dB"], {8.0})


def test_dark_plot_without_the_boost_series(render):
    r = synthetic_report()
    r.dark.boost_gain_db = None
    _, figs = render(r)
    for ax in figs["dark.png"].axes:
        assert list(_lines(ax)) == ["operating gain"]


def test_stability_plot(render):
    r = synthetic_report()
    s = r.stability
    _, figs = render(r)
    (ax,) = figs["stability.png"].axes
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("device time (s)", "intensity correlation",
                                                                  "Stability")
    lines = _lines(ax)
    pts = lines["repeated projections"]
    np.testing.assert_allclose(_xy(pts)[0], s.times_s)
    np.testing.assert_allclose(_xy(pts)[1], s.correlation)
    assert _style(pts) == ("None", "o")
    model = lines["tau = 300 ± 20 s"]
    assert _style(model) == ("-", "None")
    tt = np.linspace(0, 8.0, 200)
    np.testing.assert_allclose(model.get_xdata(), tt)
    np.testing.assert_allclose(model.get_ydata(), 0.95 * np.exp(-2 * tt / 300.0))  # corr_I = A exp(-2t/tau)
    assert _legend(ax)[1] == {8.0}


def test_stability_plot_with_only_a_bound_has_no_model(render):
    r = synthetic_report()
    r.stability.decorrelation_time_s = fig(900.0, None, "s", bound="lower")
    _, figs = render(r)
    assert list(_lines(figs["stability.png"].axes[0])) == ["repeated projections"]


def test_linear_snr_plot(render):
    r = synthetic_report()
    _, figs = render(r)
    (ax,) = figs["linear_snr.png"].axes
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
    assert ax.get_xlabel() == "exposure (us)" and ax.get_ylabel() == "SNR (power)"
    assert ax.get_title() == "Linear projections (x: saturated)"
    lines = ax.get_lines()
    by_label = {ln.get_label(): ln for ln in lines}
    for sc in r.linear_snr.schemes:
        ln = by_label[sc.scheme]
        assert _style(ln) == ("-", "o")
        np.testing.assert_allclose(ln.get_xdata(), sc.exposures_us)
        np.testing.assert_allclose(ln.get_ydata(), sc.snr)
    # the saturated point of the anchor scheme (900 us, SNR 60) marked by a red x, nothing for complement
    marks = [ln for ln in lines if ln.get_marker() == "x"]
    assert len(marks) == 1
    assert marks[0].get_linestyle() == "None" and same_color(marks[0].get_color(), "r")
    assert list(marks[0].get_xdata()) == [900.0] and list(marks[0].get_ydata()) == [60.0]
    op = by_label["operating exposure"]
    assert op.get_linestyle() == ":" and same_color(op.get_color(), "gray") and op.get_xdata()[0] == 400.0
    assert _legend(ax) == (["anchor", "complement", "operating exposure"], {8.0})


def test_partial_reports_plot_what_they_have(render, tmp_path):
    paths, _ = render(synthetic_report(photon_transfer=None, stability=None, linear_snr=None))
    assert paths == [tmp_path / "dark.png"]
    paths, _ = render(synthetic_report(dark=None, photon_transfer=None, stability=None))
    assert paths == [tmp_path / "linear_snr.png"]
    paths, _ = render(synthetic_report(dark=None, photon_transfer=None, stability=None, linear_snr=None))
    assert paths == []
