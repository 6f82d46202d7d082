"""The sweep's results table (host/sweep/table.py): results.jsonl rows, the CSV and the summary plot."""

from __future__ import annotations

import csv
import math
import struct
from datetime import datetime
from pathlib import Path

import matplotlib
import pytest
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator

from host.sweep import table
from host.sweep.table import append_row, finished_ids, plot_summary, read_rows, summarize, write_csv


def test_file_names():
    assert (table.JSONL, table.CSV, table.PNG) == ("results.jsonl", "results.csv", "summary.png")


# --- append_row ---------------------------------------------------------------------------------


def test_append_row_appends_one_json_line_per_call(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text('{"trial_id": "old"}\n')  # an earlier sweep's row is kept
    append_row(tmp_path, {"trial_id": "t0", "status": "ok", "acc": 0.5, "lr": None})
    assert path.read_text() == ('{"trial_id": "old"}\n'
                                '{"trial_id": "t0", "status": "ok", "acc": 0.5, "lr": null}\n')
    # values JSON cannot encode are written as their str()
    append_row(tmp_path, {"trial_id": "t1", "dir": Path("/runs/t1"), "at": datetime(2024, 1, 2, 3, 4, 5)})
    assert path.read_text().splitlines() == [
        '{"trial_id": "old"}',
        '{"trial_id": "t0", "status": "ok", "acc": 0.5, "lr": null}',
        '{"trial_id": "t1", "dir": "/runs/t1", "at": "2024-01-02 03:04:05"}',
    ]
    assert path.read_text().endswith("}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.jsonl"]


def test_append_row_creates_the_file(tmp_path):
    append_row(tmp_path, {"trial_id": "a"})
    assert (tmp_path / "results.jsonl").read_text() == '{"trial_id": "a"}\n'


# --- read_rows / finished_ids -------------------------------------------------------------------


def test_read_rows_of_a_missing_table_is_empty(tmp_path):
    assert read_rows(tmp_path) == []
    assert read_rows(tmp_path / "no_such_dir") == []
    assert finished_ids(tmp_path) == set()


def test_read_rows_keeps_the_latest_row_per_trial_and_skips_blank_and_torn_lines(tmp_path):
    (tmp_path / "results.jsonl").write_text(
        '{"trial_id": "b", "status": "error", "error": "boom"}\n'
        "\n"
        '{"trial_id": "a", "status": "ok", "acc": 0.25}\n'
        '{"trial_id": "c", "sta\n'  # torn line in the middle (an interrupted writer, then a re-run)
        "   \n"
        '{"trial_id": "b", "status": "ok", "acc": 0.75}\n'  # the re-run supersedes the error row
        '{"trial_id": "d", "status": "ok", "acc": 1}\n'
        '{"trial_id": "e", "status": "o'  # torn last line, no newline
    )
    # order: first appearance of each trial_id (b before a), value: its latest row
    assert read_rows(tmp_path) == [
        {"trial_id": "b", "status": "ok", "acc": 0.75},
        {"trial_id": "a", "status": "ok", "acc": 0.25},
        {"trial_id": "d", "status": "ok", "acc": 1},
    ]


def test_read_rows_reads_what_append_row_wrote(tmp_path):
    append_row(tmp_path, {"trial_id": "x", "status": "error"})
    append_row(tmp_path, {"trial_id": "y", "status": "ok"})
    append_row(tmp_path, {"trial_id": "x", "status": "ok", "n": 3})
    assert read_rows(tmp_path) == [{"trial_id": "x", "status": "ok", "n": 3},
                                   {"trial_id": "y", "status": "ok"}]


def test_finished_ids_are_trials_whose_latest_row_is_ok(tmp_path):
    (tmp_path / "results.jsonl").write_text(
        '{"trial_id": "err", "status": "error"}\n'
        '{"trial_id": "ok", "status": "ok"}\n'
        '{"trial_id": "rerun", "status": "error"}\n'
        '{"trial_id": "broken", "status": "ok"}\n'
        '{"trial_id": "nostatus"}\n'
        '{"trial_id": "upper", "status": "OK"}\n'
        '{"trial_id": "rerun", "status": "ok"}\n'
        '{"trial_id": "broken", "status": "error"}\n'  # a later error row: not finished any more
    )
    assert finished_ids(tmp_path) == {"ok", "rerun"}


# --- write_csv ----------------------------------------------------------------------------------


def test_write_csv_columns_are_the_union_in_first_seen_order_and_rows_sorted_by_trial(tmp_path):
    rows = [
        {"trial_id": "t2", "b": 2.5, "a": "x"},
        {"trial_id": "t0", "a": "y", "c": True},
        {"trial_id": "t1", "d": None, "b": 10},
    ]
    path = write_csv(tmp_path, rows)
    assert path == tmp_path / "results.csv"
    with open(path, newline="") as f:
        assert list(csv.reader(f)) == [
            ["trial_id", "b", "a", "c", "d"],
            ["t0", "", "y", "True", ""],
            ["t1", "10", "", "", ""],
            ["t2", "2.5", "x", "", ""],
        ]
    assert path.read_bytes() == (b"trial_id,b,a,c,d\r\nt0,,y,True,\r\nt1,10,,,\r\nt2,2.5,x,,\r\n")
    assert rows[0] == {"trial_id": "t2", "b": 2.5, "a": "x"}  # the caller's rows are not changed


def test_write_csv_replaces_an_earlier_table(tmp_path):
    (tmp_path / "results.csv").write_text("stale,content\n1,2\n3,4\n")
    path = write_csv(tmp_path, [{"trial_id": "only", "acc": 0.5}])
    assert path.read_bytes() == b"trial_id,acc\r\nonly,0.5\r\n"


# --- summarize ----------------------------------------------------------------------------------

X, SEED, METRIC = "device.camera.read_noise_e", "train.seed", "test_accuracy"


def _row(scheme, lr, x, seed, value, status="ok"):
    return {"trial_id": f"{scheme}-{lr}-{x}-{seed}", "status": status, "train.feedback.scheme": scheme,
            "lr": lr, X: x, SEED: seed, METRIC: value}


def test_summarize_groups_by_the_other_swept_keys_and_aggregates_seeds():
    rows = [
        _row("sign", 0.1, 0.0, 9, 99.0, status="error"),  # skipped rows first: skipping is not stopping
        {**_row("sign", 0.1, 0.0, 8, 50.0), "status": None},
        {k: v for k, v in _row("sign", 0.1, 0.0, 7, 60.0).items() if k != "status"},
        _row("sign", 0.1, 5.0, 0, 0.5),
        _row("sign", 0.1, 0.0, 0, 1),
        _row("ternary", 0.1, 0.0, 0, "0.25"),  # a value read back as text is converted with float()
        _row("sign", 0.1, 0.0, 1, 2),
        _row("sign", 0.01, 2.0, 0, 7.0),
        _row("sign", 0.1, 5.0, 1, 1.5),
        _row("sign", 0.1, 2.0, 0, 3),
        _row("sign", 0.1, 0.0, 2, 4),
        _row("sign", 0.1, 5.0, 2, None),  # an ok row without the metric is skipped
        {k: v for k, v in _row("sign", 0.1, 5.0, 3, 1.0).items() if k != METRIC},
        _row("bad", 0.1, 0.0, 0, 0.9, status="error"),  # a line only failed trials have: not shown
        _row("sign", 0.01, 2.0, 1, 8.0, status="error"),
    ]
    out = summarize(rows, METRIC, X, SEED, ["train.feedback.scheme", X, "lr", SEED])
    # lines in order of their first ok row; labels from the last part of each dotted key
    assert list(out) == ["scheme=sign, lr=0.1", "scheme=ternary, lr=0.1", "scheme=sign, lr=0.01"]
    # x = 0: seeds 1, 2, 4 (mean 7/3); x = 5: seeds 0.5, 1.5 (mean 1); x = 2: one seed (std 0)
    std_0 = math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2)  # = sqrt(7/3)
    std_5 = math.sqrt(((0.5 - 1.0) ** 2 + (1.5 - 1.0) ** 2) / 1)  # = sqrt(1/2)
    assert out["scheme=sign, lr=0.1"] == [
        (0.0, pytest.approx(7 / 3, rel=1e-12), pytest.approx(std_0, rel=1e-12), 3),
        (2.0, 3.0, 0.0, 1),
        (5.0, pytest.approx(1.0, rel=1e-12), pytest.approx(std_5, rel=1e-12), 2),
    ]
    assert out["scheme=ternary, lr=0.1"] == [(0.0, 0.25, 0.0, 1)]
    assert out["scheme=sign, lr=0.01"] == [(2.0, 7.0, 0.0, 1)]
    for series in out.values():
        for _x, mean, std, _n in series:
            assert type(mean) is float and type(std) is float


def test_summarize_without_other_swept_keys_labels_the_line_with_the_metric():
    rows = [
        {"trial_id": "1", "status": "ok", "act": "relu", SEED: 0, "loss": 4.0},
        {"trial_id": "2", "status": "ok", "act": 10, SEED: 0, "loss": 1.0},
        {"trial_id": "3", "status": "ok", "act": "gelu", SEED: 0, "loss": 2.0},
        {"trial_id": "4", "status": "ok", "act": 2, SEED: 0, "loss": 3.0},
        {"trial_id": "5", "status": "ok", "act": 0.5, SEED: 0, "loss": 5.0},
        {"trial_id": "6", "status": "ok", "act": "relu", SEED: 1, "loss": 6.0},
        {"trial_id": "7", "status": "ok", "act": 10, SEED: 1, "loss": 2.0},
    ]
    # numbers first in numeric order (10 after 2), then strings in alphabetical order
    expected = [
        (0.5, 5.0, 0.0, 1),
        (2, 3.0, 0.0, 1),
        (10, 1.5, pytest.approx(math.sqrt(((1.0 - 1.5) ** 2 + (2.0 - 1.5) ** 2) / 1), rel=1e-12), 2),
        ("gelu", 2.0, 0.0, 1),
        ("relu", 5.0, pytest.approx(math.sqrt(((4.0 - 5.0) ** 2 + (6.0 - 5.0) ** 2) / 1), rel=1e-12), 2),
    ]
    assert summarize(rows, "loss", "act", SEED, ["act", SEED]) == {"loss": expected}
    assert summarize(rows, "loss", "act", SEED, ["act"]) == {"loss": expected}  # seed not swept
    assert summarize([], "loss", "act", SEED, ["act"]) == {}


def test_summarize_a_key_with_no_dots_and_a_missing_value():
    rows = [{"trial_id": "1", "status": "ok", "x": 1, "lr": 0.5, "m": 2.0},
            {"trial_id": "2", "status": "ok", "x": 1, "m": 4.0}]
    out = summarize(rows, "m", "x", "seed", ["lr", "x", "seed"])
    assert out == {"lr=0.5": [(1, 2.0, 0.0, 1)], "lr=None": [(1, 4.0, 0.0, 1)]}


# --- plot_summary -------------------------------------------------------------------------------


@pytest.fixture
def kept_figures(monkeypatch):
    """plot_summary's figures, kept open (plt.close recorded instead) to read back what was drawn."""
    real_close = table.plt.close
    closed: list = []
    monkeypatch.setattr(table.plt, "close", closed.append)
    yield closed
    for fig in closed:
        if isinstance(fig, Figure):
            real_close(fig)


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _errorbars(ax):
    """(label, xs, ys, yerr, marker, cap marker size) of each errorbar line."""
    out = []
    for c in ax.containers:
        line, caps, (bars,) = c
        segs = bars.get_segments()
        yerr = [(s[1][1] - s[0][1]) / 2 for s in segs]
        assert [s[0][0] for s in segs] == [s[1][0] for s in segs] == list(line.get_xdata())
        assert [(s[0][1] + s[1][1]) / 2 for s in segs] == pytest.approx(list(line.get_ydata()), abs=1e-12)
        out.append((c.get_label(), list(line.get_xdata()), list(line.get_ydata()), yerr, line.get_marker(),
                    [cap.get_markersize() for cap in caps]))
    return out


def test_plot_summary_one_numeric_line(tmp_path, kept_figures):
    summary = {"acc": [(0.0, 0.5, 0.1, 3), (2.5, 0.75, 0.0, 1), (10, 0.25, 0.05, 2)]}
    with matplotlib.rc_context({"figure.dpi": 50}):  # the PNG's resolution is plot_summary's own
        path = plot_summary(tmp_path, summary, "acc", "device.camera.read_noise_e", n_failed=0)
    assert path == tmp_path / "summary.png"
    assert _png_size(path) == (600, 400)  # 6 x 4 inches at 100 dpi
    (fig,) = kept_figures
    assert isinstance(fig, Figure)
    assert tuple(fig.get_size_inches()) == (6.0, 4.0)
    (ax,) = fig.axes
    assert ax.get_xlabel() == "device.camera.read_noise_e"
    assert ax.get_ylabel() == "acc (mean ± std over seeds)"
    assert ax.get_title() == "sweep summary"
    assert ax.get_legend() is None  # one line: no legend
    ((label, xs, ys, yerr, marker, caps),) = _errorbars(ax)
    assert (label, xs, ys, marker, caps) == ("acc", [0.0, 2.5, 10], [0.5, 0.75, 0.25], "o", [6.0, 6.0])
    assert yerr == pytest.approx([0.1, 0.0, 0.05], abs=1e-12)
    assert not isinstance(ax.xaxis.get_major_locator(), FixedLocator)  # numeric x: automatic ticks
    grid = ax.xaxis.get_gridlines()[0]
    assert grid.get_visible() and grid.get_alpha() == 0.3
    assert ax.yaxis.get_gridlines()[0].get_alpha() == 0.3


def test_plot_summary_string_x_lines_legend_and_failed_count(tmp_path, kept_figures):
    summary = {
        "scheme=sign": [("gelu", 1.0, 0.5, 2), ("relu", 2.0, 0.0, 1), ("tanh", 3.0, 0.25, 4)],
        "scheme=ternary": [("gelu", 4.0, 1.0, 2), ("relu", 5.0, 0.0, 1), ("tanh", 6.0, 2.0, 3)],
    }
    path = plot_summary(tmp_path, summary, "loss", "act", n_failed=2)
    assert path == tmp_path / "summary.png"
    assert _png_size(path) == (600, 400)
    (fig,) = kept_figures
    (ax,) = fig.axes
    assert ax.get_xlabel() == "act"
    assert ax.get_ylabel() == "loss (mean ± std over seeds)"
    assert ax.get_title() == "sweep summary (2 failed trial(s) not shown)"
    lines = _errorbars(ax)
    assert [(lab, xs, ys, m, caps) for lab, xs, ys, _e, m, caps in lines] == [
        ("scheme=sign", [0, 1, 2], [1.0, 2.0, 3.0], "o", [6.0, 6.0]),
        ("scheme=ternary", [0, 1, 2], [4.0, 5.0, 6.0], "o", [6.0, 6.0]),
    ]
    assert lines[0][3] == pytest.approx([0.5, 0.0, 0.25], abs=1e-12)
    assert lines[1][3] == pytest.approx([1.0, 0.0, 2.0], abs=1e-12)
    assert list(ax.get_xticks()) == [0, 1, 2]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["gelu", "relu", "tanh"]
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["scheme=sign", "scheme=ternary"]
    assert [t.get_fontsize() for t in legend.get_texts()] == [7.0, 7.0]
    assert ax.xaxis.get_gridlines()[0].get_alpha() == 0.3


def test_plot_summary_one_string_line_has_no_legend(tmp_path, kept_figures):
    # a number among strings (summarize puts numbers first): every x is placed by its index
    series = [(1, 0.5, 0.25, 2), ("a", 1.0, 0.0, 1), ("b", 2.0, 0.5, 2)]
    plot_summary(tmp_path, {"m": series}, "m", "opt", n_failed=1)
    (fig,) = kept_figures
    (ax,) = fig.axes
    assert ax.get_title() == "sweep summary (1 failed trial(s) not shown)"
    assert ax.get_legend() is None
    assert list(ax.get_xticks()) == [0, 1, 2]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "a", "b"]
    ((label, xs, ys, yerr, marker, _caps),) = _errorbars(ax)
    assert (label, xs, ys, marker) == ("m", [0, 1, 2], [0.5, 1.0, 2.0], "o")
    assert yerr == pytest.approx([0.25, 0.0, 0.5], abs=1e-12)


def test_plot_summary_lines_with_different_categories_share_one_axis(tmp_path, kept_figures):
    # line A lacks "tanh", line B lacks "gelu" (e.g. every trial there failed): each point must sit
    # above its own category's tick, not at its index within its own line
    summary = {"A": [("gelu", 1.0, 0.0, 1), ("relu", 2.0, 0.0, 1)],
               "B": [("relu", 3.0, 0.0, 1), ("tanh", 4.0, 0.0, 1)],
               "C": [(0.5, 5.0, 0.0, 1)]}  # a numeric value among them is one more category
    plot_summary(tmp_path, summary, "m", "act", n_failed=0)
    (fig,) = kept_figures
    (ax,) = fig.axes
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks == ["0.5", "gelu", "relu", "tanh"]  # numbers first, then strings, as summarize sorts
    placed = {lab: dict(zip(xs, ys, strict=True)) for lab, xs, ys, *_ in _errorbars(ax)}
    assert placed == {"A": {ticks.index("gelu"): 1.0, ticks.index("relu"): 2.0},
                      "B": {ticks.index("relu"): 3.0, ticks.index("tanh"): 4.0},
                      "C": {ticks.index("0.5"): 5.0}}
