"""The figures every training benchmark keeps of one run (bench/dfa.py, bench/dfa_models.py)."""

from __future__ import annotations

import statistics


def run_summary(res, wall_s: float) -> dict:
    """Accuracy, alignment, median step time (epochs 2.., the first when only one ran), frames, device
    time, saturation warnings, exposure, wall time and the accuracy curve of a ``TrainResult``.

    Tasks with a validation split (graphs) also get ``best_val_epoch`` (1-based, the first epoch of
    highest validation accuracy) and ``test_accuracy_at_best_val``: model selection on the validation
    nodes, the protocol of Kipf & Welling and of DFA-scales' GCN recipe.
    """
    steps = [r["step_time_ms"] for r in res.metrics]
    f = res.final
    val = [r.get("val_accuracy") for r in res.metrics]
    best = max(range(len(val)), key=lambda i: val[i]) if val and None not in val else None
    return {
        "test_accuracy": f["test_accuracy"],
        "val_accuracy": f.get("val_accuracy"),
        "best_val_epoch": None if best is None else best + 1,
        "test_accuracy_at_best_val": None if best is None else res.metrics[best]["test_accuracy"],
        "alignment": f["alignment"],
        "step_time_ms": statistics.median(steps[1:] if len(steps) > 1 else steps),
        "frames": sum(r["frames"] for r in res.metrics),
        "device_time_s": sum(r["device_time_s"] for r in res.metrics),
        "saturation_warnings": sum(r["saturation_warnings"] for r in res.metrics),
        "exposure": res.exposure,
        "wall_s": wall_s,
        "curve": [r["test_accuracy"] for r in res.metrics],
        "val_curve": None if best is None else val,
    }
