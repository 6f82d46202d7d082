"""``opu robustness``: bad arguments are refused with exit status 2 and a message naming what is allowed."""

from __future__ import annotations

from host.cli import main


def test_bad_eps_and_attacks_are_refused(tmp_path, capsys):
    assert main(["robustness", str(tmp_path), "--eps", "0.1,abc"]) == 2
    assert "--eps takes a comma-separated list" in capsys.readouterr().err
    assert main(["robustness", str(tmp_path), "--attacks", "pgd,cw"]) == 2
    assert "fgsm, pgd, transfer, square, hsj, pr" in capsys.readouterr().err
    assert main(["robustness", str(tmp_path), "--eps", "0,0.1"]) == 2
    assert "(0, 1]" in capsys.readouterr().err
    assert main(["robustness", str(tmp_path)]) == 2  # not a training run
    assert "not a finished training run" in capsys.readouterr().err
