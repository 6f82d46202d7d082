"""Optical DFA through LightOn's lightonml vs the in-process simulator (issue 14).

    .venv/bin/python bench/lightonml_train.py [--quick]   # writes bench/results/lightonml_train.json

``opu train --mode optical-dfa --dataset digits --seed 0`` (64-256-256-10 tanh, batch 128, Adam 1e-3,
10 epochs; ``--quick``: 3) on two noiseless 8-bit devices: ``lightonml:simulated`` (lightonml 1.4.3's
``SimulatedOpuDevice`` behind drivers/lightonml_device.py) and the in-process simulator with the
``opu.noiseless`` preset (``sim:noiseless.json``). Keys: ``acc_lightonml`` and ``acc_inprocess_noiseless``
(final test accuracy, %), ``acc_diff_points`` (goal: |diff| <= 1 point), ``step_ms_*`` (median
optical-dfa step, epochs 2+), ``step_time_ratio`` (lightonml / in-process; reported, no goal).
Not named ``lightonml.py``: a script's folder comes first on ``sys.path`` and would shadow the package.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import opu  # noqa: E402
from host.cli import main as opu_main  # noqa: E402


def _train(device: str, epochs: int, out: Path) -> dict:
    rc = opu_main(["train", "--mode", "optical-dfa", "--device", device, "--dataset", "digits",
                   "--epochs", str(epochs), "--seed", "0", "--out", str(out), "--no-progress"])
    if rc:
        raise SystemExit(f"opu train on {device} failed with exit status {rc}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step_time_ms"] for r in rows[1:]] or [rows[0]["step_time_ms"]]
    return {"acc": 100 * rows[-1]["test_accuracy"], "step_ms": statistics.median(steps)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 epochs instead of 10")
    args = ap.parse_args(argv)
    epochs = 3 if args.quick else 10
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "noiseless.json"
        cfg.write_text(opu.noiseless(seed=0).model_dump_json())
        local = _train(f"sim:{cfg}", epochs, Path(tmp) / "inprocess")
        lml = _train("lightonml:simulated", epochs, Path(tmp) / "lightonml")
    result = {
        "epochs": epochs, "dataset": "digits", "seed": 0,
        "acc_inprocess_noiseless": local["acc"], "acc_lightonml": lml["acc"],
        "acc_diff_points": lml["acc"] - local["acc"],
        "step_ms_inprocess": local["step_ms"], "step_ms_lightonml": lml["step_ms"],
        "step_time_ratio": lml["step_ms"] / local["step_ms"],
        "goals": {"acc_diff_points": "|diff| <= 1 (full configuration)", "step_time_ratio": "reported"},
    }
    out = ROOT / "bench" / "results" / "lightonml_train.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"acc_diff_points  {result['acc_diff_points']:+6.2f}  (goal |diff| <= 1; lightonml:simulated "
          f"{lml['acc']:.2f} % vs in-process noiseless {local['acc']:.2f} %, {epochs} epochs)")
    print(f"step_time_ratio  {result['step_time_ratio']:6.2f}  (lightonml {lml['step_ms']:.1f} ms / "
          f"in-process {local['step_ms']:.1f} ms per optical-dfa step)")
    print(f"wrote {out.relative_to(ROOT)}")
    return result


if __name__ == "__main__":
    main()
