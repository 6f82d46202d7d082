"""Transmission-matrix retrieval: exact recovery, alignment, frame budget, refusals, twin, refresh.

Truths are independent of the retrieval: the simulator's field B x (opu.Simulator.field) and the
config's gain g = photons_per_mirror_us x exposure x QE x K, never what the retrieval returned.
"""

from __future__ import annotations

import numpy as np
import pytest

import drivers
import opu
from drivers.sim import SimDevice
from host.cli import main
from host.tm import (
    NoLightError,
    RecoveredTM,
    SaturatedDeviceError,
    TMPlanError,
    align_rows,
    build_patterns,
    make_plan,
    pearson,
    rel_frobenius_error,
    retrieve,
    retrieve_tm,
)


def _gain(cfg: opu.OPUConfig) -> float:
    c = cfg.camera
    return cfg.laser.photons_per_mirror_us * c.exposure_us * c.quantum_efficiency * c.system_gain_dn_per_e


def _truth(sim: opu.Simulator, n: int, big_n: int) -> np.ndarray:
    """B (m, n) of the first n features from the simulator's field, in sqrt(DN)."""
    eye = np.zeros((n, big_n), dtype=bool)
    eye[np.arange(n), np.arange(n)] = True
    return sim.field(eye).T.astype(np.complex128) * np.sqrt(_gain(sim.config))


def test_exact_recovery_on_noiseless_tiny_device():
    n, m = 12, 64
    cfg = opu.ideal(seed=11, n_outputs=m)
    plan = make_plan(n, anchors=6)
    sim = opu.Simulator(cfg, plan.device_features)
    patterns, layout = build_patterns(plan)
    res = retrieve(sim.acquire(patterns), plan, layout)
    truth = _truth(sim, n, plan.device_features)
    assert rel_frobenius_error(res.matrix, truth) < 1e-4
    # the anchor scheme's effective matrix, computed from the truth alone, equals the digital one
    ref = np.zeros(plan.device_features, dtype=bool)
    ref[n:] = True
    br = sim.field(ref).astype(np.complex128) * np.sqrt(_gain(cfg))
    c = np.sqrt(2.0 * n / np.mean(np.abs(br) ** 2))
    a_true = c * (np.conj(br)[:, None] * truth).real / np.abs(br)[:, None]
    tm = RecoveredTM(res.matrix, res.anchor_fields, res.dark_dn, np.arange(m), np.arange(n), 1,
                     settings={"bit_depth": 8}, plan=plan.model_dump())
    np.testing.assert_allclose(tm.effective_matrix(), a_true, atol=1e-4 * np.abs(a_true).max())
    # and |B x|^2 predicts the noiseless frames of new inputs
    x = np.random.default_rng(0).random((5, n)) < 0.5
    full = np.zeros((5, plan.device_features), dtype=bool)
    full[:, :n] = x
    np.testing.assert_allclose(tm.predict_intensity(x), sim.acquire(full), rtol=1e-4, atol=1e-4)


def test_alignment_invariant_to_row_phase_and_conjugation():
    rng = np.random.default_rng(3)
    m, n = 40, 30
    truth = rng.normal(size=(m, n)) + 1j * rng.normal(size=(m, n))
    est = truth + 0.05 * (rng.normal(size=(m, n)) + 1j * rng.normal(size=(m, n)))
    phase = np.exp(2j * np.pi * rng.random(m))[:, None]
    conj = rng.random(m) < 0.5
    scrambled = np.where(conj[:, None], np.conj(truth), truth) * phase
    # a scrambled truth is the truth up to what intensities cannot see: zero error
    assert rel_frobenius_error(scrambled, truth) < 1e-12
    # and the error of an estimate does not depend on the scrambling of the truth it is measured against
    e1 = rel_frobenius_error(est, truth)
    e2 = rel_frobenius_error(est, scrambled)
    assert e1 == pytest.approx(e2, rel=1e-9)
    # independent value: per-row noise of relative size 0.05 (no alignment is better than the truth's own)
    assert 0.03 < e1 < 0.07
    np.testing.assert_allclose(np.abs(align_rows(scrambled, truth)), np.abs(truth))


@pytest.mark.parametrize("n, s, k, r, d", [(5, 3, 5, 1, 2), (12, 6, 30, 2, 8), (40, 20, 80, 3, 4)])
def test_frame_count_formula_and_patterns(n, s, k, r, d):
    plan = make_plan(n, anchors=s, signals=k, anchor_repeats=r, dark_repeats=d)
    patterns, layout = build_patterns(plan)
    assert plan.frames == d + r * s * (s + 1) // 2 + k * (s + 1) == patterns.shape[0]
    # nested anchors: pair (i, j) lights exactly k_j - k_i anchor features and no data feature
    ks = plan.anchor_sizes
    for p, (i, j) in enumerate(plan.anchor_pair_index()):
        pat = patterns[layout.anchor_first[0, p]]
        assert not pat[:n].any() and pat[n:].sum() == ks[j] - ks[i]
    x = plan.signal_matrix()
    for kk in (0, k - 1):
        for ss in (0, s):
            pat = patterns[layout.signal[kk, ss]]
            assert (pat[:n] == x[kk]).all() and pat[n:].sum() == ks[ss]
    assert not patterns[layout.dark].any()


def test_device_takes_exactly_the_planned_frames(tmp_path):
    plan = make_plan(10, anchors=4)
    dev = SimDevice(config=opu.realistic(seed=2, n_outputs=64)).open()
    before = dev.status().frames_total
    tm, info = retrieve_tm(dev, plan, tmp_path, progress=False, echo=None)
    assert dev.status().frames_total - before == plan.frames + info.probe_frames
    assert info.frames == plan.frames == tm.diagnostics["frames"]
    back = RecoveredTM.load(tmp_path / "tm.npz")
    np.testing.assert_array_equal(back.matrix, tm.matrix)
    assert back.settings == dev.settings.model_dump() and back.plan == plan.model_dump()


@pytest.mark.parametrize("kw, match", [
    (dict(n_features=50, anchors=20, max_frames=1000), "at most 1000"),
    (dict(n_features=50, anchors=20, signals=20), "signals >= features"),
    (dict(n_features=50, anchors=2), "anchors must be an integer >= 3"),
    (dict(n_features=50, anchors=20, anchor_features=10), "at least 20 anchor features"),
    (dict(n_features=0, anchors=5), "features must be"),
])
def test_bad_plans_refused(kw, match):
    with pytest.raises(TMPlanError, match=match):
        make_plan(**kw)


def _frames(dev):
    return dev.status().frames_total


@pytest.mark.parametrize("laser, error, match", [
    (500.0, SaturatedDeviceError, "ADC maximum"),
    (0.0, NoLightError, "above dark"),
])
def test_saturating_or_dark_device_refused_before_the_acquisition(tmp_path, laser, error, match):
    cfg = opu.realistic(seed=1, n_outputs=64).replace(laser={"photons_per_mirror_us": laser})
    dev = SimDevice(config=cfg).open()
    plan = make_plan(10, anchors=4)
    with pytest.raises(error, match=match):
        retrieve_tm(dev, plan, tmp_path, light="keep", progress=False, echo=None)
    assert _frames(dev) == 4  # the probe only: dark x 2 and the brightest planned pattern x 2
    assert not (tmp_path / "tm.npz").exists()


def test_plan_over_device_capacity_refused_before_any_frame(tmp_path):
    dev = SimDevice(config=opu.realistic(seed=1, n_outputs=64)).open()
    dev.configure(n_features=16, input_roi={"row": 0, "col": 0, "height_mirrors": 8, "width_mirrors": 8})
    with pytest.raises(TMPlanError, match="do not fit"):
        retrieve_tm(dev, make_plan(40, anchors=5), tmp_path, progress=False, echo=None)
    assert _frames(dev) == 0


def test_cli_max_frames_refused_before_connecting(tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["tm-retrieve", "--device", "sim", "--features", "100", "--anchors", "20", "--out", str(out),
               "--max-frames", "4000"])
    assert rc == 2 and "needs 4628 frames" in capsys.readouterr().err
    assert not out.exists()


def test_recovered_medium_gives_its_matrix_and_refuses_other_pixels():
    cfg = opu.ideal(seed=0, n_outputs=16)
    pix = opu.camera.roi_pixel_ids(cfg.camera)
    mir = opu.dmd.feature_mirror_ids(cfg.dmd, 6)
    rng = np.random.default_rng(0)
    b = (rng.normal(size=(16, 6)) + 1j * rng.normal(size=(16, 6))).astype(np.complex64)
    med = opu.RecoveredMedium(b, pix, mir)
    sim = opu.Simulator(cfg, 4, medium=med)  # a subset of the columns
    x = rng.random((3, 4)) < 0.5
    np.testing.assert_allclose(sim.field(x), x.astype(np.float32) @ b[:, :4].T, rtol=1e-5, atol=1e-5)
    with pytest.raises(opu.ConfigError, match="outside the 16 pixels"):
        opu.Simulator(cfg.with_outputs(64), 4, medium=med)
    with pytest.raises(opu.ConfigError, match="outside the 6 recovered"):
        opu.Simulator(cfg, 7, medium=med)
    with pytest.raises(opu.ConfigError, match="macro-pixels"):
        opu.Simulator(cfg.replace(dmd={"macro_pixel_mirrors": 2}), 4, medium=med)


def test_twin_device_predicts_the_device(tmp_path):
    n = 16
    src = SimDevice(config=opu.realistic(seed=5, n_outputs=256)).open()
    plan = make_plan(n, anchors=8)
    tm, _ = retrieve_tm(src, plan, tmp_path, progress=False, echo=None)
    x = np.random.default_rng(9).random((40, n)) < 0.5
    pats = np.zeros((40, plan.device_features), dtype=bool)
    pats[:, :n] = x
    measured = src.acquire(pats, progress=False).astype(np.float64)
    with drivers.connect(f"twin:{tmp_path}") as twin:
        assert twin.n_features == n and twin.n_outputs == 256
        twin.set_noise(False)
        twin_frames = twin.acquire(x, progress=False).astype(np.float64)
        # noise off: the twin's frames are the recovered prediction (to the DN rounding, plus the
        # twin's own dark map instead of the measured one)
        pred = tm.predict_frames(x)
        assert np.abs(twin_frames - pred).mean() < 0.6
        assert pearson(measured, twin_frames) > 0.97
        with pytest.raises(drivers.DeviceError, match="outside"):
            twin.configure(n_features=n + 1)
            twin.acquire(np.ones(n + 1, dtype=bool))
    with pytest.raises(ValueError, match="not a file"):
        drivers.connect(f"twin:{tmp_path / 'missing'}")


def test_cli_retrieves_writes_and_refresh_keeps_a_fresh_matrix(tmp_path, capsys):
    cfg_path = tmp_path / "dev.json"
    cfg_path.write_text(opu.realistic(seed=3, n_outputs=64).model_dump_json())
    out = tmp_path / "tm"
    args = ["tm-retrieve", "--device", f"sim:{cfg_path}", "--features", "8", "--anchors", "4",
            "--out", str(out), "--no-progress"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "plan: 108 frames" in text and "device time 0.05 s at 2000 Hz" in text  # 8 + 2*10 + 16*5
    tm = RecoveredTM.load(out / "tm.npz")
    assert tm.shape == (64, 8) and (out / "twin.json").is_file()
    # the same (static-seeded, fresh-process) device: the correlation is high, nothing is re-acquired
    assert main([*args, "--refresh", "0.5"]) == 0
    assert "kept" in capsys.readouterr().out
    dark = tmp_path / "dark.json"
    dark.write_text(opu.realistic(seed=3, n_outputs=64).replace(laser={"photons_per_mirror_us": 0.0})
                    .model_dump_json())
    assert main(["tm-retrieve", "--device", f"sim:{dark}", "--features", "8", "--anchors", "4",
                 "--out", str(tmp_path / "none"), "--light", "keep"]) == 3
    assert "refused before acquiring" in capsys.readouterr().err
    assert not (tmp_path / "none" / "tm.npz").exists()
