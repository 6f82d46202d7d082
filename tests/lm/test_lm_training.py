"""The Transformer training loop: it learns, resumes exactly, and keeps its work on a device failure."""

from __future__ import annotations

import json
import math

import jax
import numpy as np
import pytest
from flaky_device import FlakySimDevice

import opu
from host.lm import LMConfig, LMTrainingError, LMTrainingInterrupted, read_metrics, train_lm
from host.lm import corpus as c
from host.lm import frontier as fr
from host.train import checkpoint

TINY = dict(d_model=16, n_blocks=2, n_heads=2, context=16, batch_size=4, eval_windows=8, alignment_windows=2)


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory):
    """A small deterministic corpus: short lines of a repetitive, learnable language."""
    root = tmp_path_factory.mktemp("text")
    rng = np.random.default_rng(0)
    words = ["def", "return", "self", "value", "if", "else", "for", "in", "range", "x", "y"]
    for i in range(30):
        lines = [" ".join(rng.choice(words, 4)) + ":" for _ in range(60)]
        (root / f"f{i:02d}.py").write_text("\n".join(lines) + "\n")
    return root


def _cfg(text_dir, **kw):
    base = dict(TINY, dataset="text", text=str(text_dir), steps=4, eval_every=2)
    base.update(kw)
    return LMConfig(**base)


def test_bp_learns_below_the_unigram_baseline(text_dir, tmp_path):
    res = train_lm(_cfg(text_dir, mode="bp", steps=150, eval_every=150, lr=3e-3), tmp_path, progress=False)
    assert res.final["heldout_bpc"] < res.unigram_bpc - 0.5
    # the unigram baseline is the cross-entropy of the train byte frequencies (independent recount)
    corp = c.load_text_corpus(text_dir)
    assert res.unigram_bpc == pytest.approx(c.unigram_bpc(corp))


def test_dfa_updates_align_with_the_true_gradient(text_dir, tmp_path):
    """The blocks' DFA updates align with BP's: random directions in a block's ~10^4 parameters have
    |cos| ~ 1e-2, so a mean cosine above 0.05 means the feedback shapes the blocks; the held-out
    loss falls from the uniform 8 bits."""
    cfg = _cfg(text_dir, mode="dfa", d_model=32, steps=200, eval_every=200, lr=1e-3)
    res = train_lm(cfg, tmp_path, progress=False)
    cos = [a["cos_update"] for a in res.final["alignment"]]
    assert len(cos) == 2 and np.mean(cos) > 0.05, cos
    assert res.final["heldout_bpc"] < 6.0


def test_metrics_carry_the_compute_of_each_period(text_dir, tmp_path):
    cfg = _cfg(text_dir, mode="dfa")
    res = train_lm(cfg, tmp_path, progress=False)
    r1, r2 = res.metrics
    tokens = cfg.batch_size * cfg.context
    assert (r1["tokens"], r2["tokens"]) == (2 * tokens, 4 * tokens)
    per_token = r1["flops_per_token"]["total"]
    assert r2["flops_total"] == pytest.approx(4 * tokens * per_token)
    assert r1["frames"] == 0 and r1["device_time_s"] == 0.0
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_resume_is_exact(text_dir, tmp_path):
    cfg = _cfg(text_dir, mode="dfa")
    full = train_lm(cfg, tmp_path / "full", progress=False)
    train_lm(cfg.model_copy(update={"steps": 2}), tmp_path / "part", progress=False)
    resumed = train_lm(cfg, tmp_path / "part", resume=True, progress=False)
    assert [r["heldout_bpc"] for r in resumed.metrics] == [r["heldout_bpc"] for r in full.metrics]
    a = checkpoint.load(tmp_path / "full" / "checkpoint.npz", None if False else _template(cfg))[0]
    b = checkpoint.load(tmp_path / "part" / "checkpoint.npz", _template(cfg))[0]
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _template(cfg):
    from host.lm import model as tf
    from host.lm.train import make_optimizer

    p = tf.init(cfg.transformer(), jax.random.PRNGKey(0))
    return p, make_optimizer(cfg).init(p)


def test_resume_refuses_a_different_model(text_dir, tmp_path):
    train_lm(_cfg(text_dir, mode="dfa", steps=2), tmp_path, progress=False)
    with pytest.raises(LMTrainingError, match="d_model"):
        train_lm(_cfg(text_dir, mode="dfa", d_model=32), tmp_path, resume=True, progress=False)
    with pytest.raises(LMTrainingError, match="already holds a run"):
        train_lm(_cfg(text_dir, mode="dfa"), tmp_path, progress=False)


def test_optical_run_counts_frames_and_resumes_exactly(text_dir, tmp_path):
    cfg = _cfg(text_dir, mode="optical-dfa")
    with FlakySimDevice(opu.realistic(seed=1)) as dev:
        full = train_lm(cfg, tmp_path / "full", device=dev, progress=False)
    rec = full.metrics[-1]
    frame_s = json.loads((tmp_path / "full" / "config.json").read_text()) and None
    assert rec["frames"] > 0 and rec["device_time_s"] > 0
    assert rec["device_energy_j"] == pytest.approx(rec["device_time_s"] * opu.realistic().electrical_power_w)
    assert frame_s is None
    with FlakySimDevice(opu.realistic(seed=1)) as dev:
        train_lm(cfg.model_copy(update={"steps": 2}), tmp_path / "part", device=dev, progress=False)
    with FlakySimDevice(opu.realistic(seed=1)) as dev:
        res = train_lm(cfg, tmp_path / "part", device=dev, resume=True, progress=False)
    assert [r["heldout_bpc"] for r in res.metrics] == [r["heldout_bpc"] for r in full.metrics]
    assert [r["frames"] for r in res.metrics] == [r["frames"] for r in full.metrics]


def test_device_failure_keeps_the_checkpoint(text_dir, tmp_path):
    cfg = _cfg(text_dir, mode="optical-dfa")
    probe = FlakySimDevice(opu.realistic(seed=1)).open()
    train_lm(cfg.model_copy(update={"steps": 2}), tmp_path / "probe", device=probe, progress=False)
    after_first_period = probe.sequences
    bad = FlakySimDevice(opu.realistic(seed=1), fail_after_sequences=after_first_period + 1).open()
    with pytest.raises(LMTrainingInterrupted, match=r"DeviceDisconnected.*step 2.*--resume") as info:
        train_lm(cfg, tmp_path / "run", device=bad, progress=False)
    assert info.value.steps_done == 2
    assert [r["step"] for r in read_metrics(tmp_path / "run")] == [2]
    good = FlakySimDevice(opu.realistic(seed=1)).open()
    res = train_lm(cfg, tmp_path / "run", device=good, resume=True, progress=False)
    assert [r["step"] for r in res.metrics] == [2, 4]


def test_frontier_fit_recovers_a_known_exponent(tmp_path):
    comp = np.geomspace(1e9, 1e13, 25)
    loss = 7.0 * comp**-0.05
    noisy = loss * (1 + 0.3 * (np.arange(25) % 2))  # every other point worse: off the envelope
    env = fr.lower_envelope(comp, noisy)
    assert set(env.tolist()) == set(range(0, 25, 2))
    law = fr.fit_power_law(comp[env], noisy[env])
    assert law.alpha == pytest.approx(0.05, abs=1e-9) and law.a == pytest.approx(7.0, rel=1e-9)
    with pytest.raises(fr.FrontierError, match="2 or more"):
        fr.fit_power_law(comp[:1], loss[:1])


def test_frontier_report_over_runs(text_dir, tmp_path):
    dirs = []
    for mode in ("bp", "dfa"):
        for d in (16, 32):
            out = tmp_path / f"{mode}{d}"
            train_lm(_cfg(text_dir, mode=mode, d_model=d, steps=6, eval_every=2), out, progress=False)
            dirs.append(out)
    summary = fr.report(dirs, tmp_path / "f.png")
    assert set(summary["flops"]) == {"bp", "dfa"}
    assert (tmp_path / "f.png").stat().st_size > 0
    for mode in ("bp", "dfa"):
        law = summary["flops"][mode]
        assert law is None or math.isfinite(law["alpha"])
    with pytest.raises(fr.FrontierError, match="not a Transformer run"):
        fr.report([tmp_path])
