"""The figures every training benchmark keeps of one run (bench/dfa.py, bench/dfa_models.py)."""

from __future__ import annotations

import statistics


def run_summary(res, wall_s: float) -> dict:
    """Accuracy, alignment, median step time (epochs 2.., the first when only one ran), frames, device
    time, saturation warnings, exposure, wall time and the accuracy curve of a ``TrainResult``."""
    steps = [r["step_time_ms"] for r in res.metrics]
    f = res.final
    return {
        "test_accuracy": f["test_accuracy"],
        "val_accuracy": f.get("val_accuracy"),
        "alignment": f["alignment"],
        "step_time_ms": statistics.median(steps[1:] if len(steps) > 1 else steps),
        "frames": sum(r["frames"] for r in res.metrics),
        "device_time_s": sum(r["device_time_s"] for r in res.metrics),
        "saturation_warnings": sum(r["saturation_warnings"] for r in res.metrics),
        "exposure": res.exposure,
        "wall_s": wall_s,
        "curve": [r["test_accuracy"] for r in res.metrics],
    }
