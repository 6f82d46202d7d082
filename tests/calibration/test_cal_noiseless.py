"""A noiseless device (lightonml's simulator, or the simulator with its noise off) gets an honest,
complete report: "no measurable noise", the noise stages skipped with the reason, no invented figures."""

from __future__ import annotations

import json

import pytest

import drivers
import opu
from host.calibration import calibrate, make_plan
from host.cli import main

QUICK = dict(progress=False, plots=False, echo=None)


def _noiseless_sim() -> drivers.Device:
    dev = drivers.connect("sim")
    dev.set_noise(False)  # expected values, quantized: repeats are bit-identical
    return dev


def _noiseless_preset(tmp_path) -> drivers.Device:
    path = tmp_path / "noiseless.json"
    path.write_text(opu.noiseless(seed=2).model_dump_json())
    return drivers.connect(f"sim:{path}")


@pytest.mark.parametrize("open_device", [lambda _: drivers.connect("lightonml:simulated"),
                                         lambda _: _noiseless_sim(), _noiseless_preset],
                         ids=["lightonml-simulated", "sim-noise-off", "sim-noiseless-preset"])
def test_noiseless_device_reports_no_measurable_noise(tmp_path, open_device):
    with open_device(tmp_path) as dev:
        before = dev.settings
        report = calibrate(dev, tmp_path, make_plan(quick=True, max_wait_s=10.0, roi_side_px=16), **QUICK)
        assert dev.settings == before  # operating point restored
    nc = report.noise_check
    assert report.complete and report.error is None
    assert report.stages_completed == ["probe", "noise_check"]
    assert nc is not None and not nc.measurable
    assert nc.varying_fraction == 0.0 and nc.max_temporal_var_dn2 == 0
    assert nc.mean_signal_dn > 10  # there was light: the frames were identical, not empty
    assert "no measurable noise" in nc.note
    assert set(report.skipped_stages) == {"dark", "photon_transfer", "prnu", "linear_snr", "stability"}
    # nothing invented: no noise figure at all
    assert report.dark is None and report.photon_transfer is None and report.prnu is None
    assert report.linear_snr is None and report.stability is None
    saved = json.loads((tmp_path / "calibration.json").read_text())
    assert saved["complete"] is True and saved["noise_check"]["measurable"] is False
    assert not (tmp_path / "twin.json").exists()


def test_noise_check_passes_a_noisy_device(tmp_path):
    """The realistic simulator is not mistaken for a noiseless one (the check can fail)."""
    from host.calibration.noise_check import run_noise_check
    from host.calibration.probe import run_probe
    from host.calibration.session import Session

    with drivers.connect("sim") as dev:
        s = Session(dev, make_plan(quick=True, max_wait_s=10.0, roi_side_px=16))
        res = run_noise_check(s, run_probe(s))
    assert res.measurable and res.varying_fraction > 0.5 and res.max_temporal_var_dn2 > 0.3


def test_cli_on_lightonml_simulated(tmp_path, capsys):
    rc = main(["calibrate", "--device", "lightonml:simulated", "--quick", "--out", str(tmp_path),
               "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "no measurable noise" in out and "status  complete" in out and "no twin.json" in out
