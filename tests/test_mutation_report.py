"""bench/mutation.py's results file: one module's run keeps the other modules' recorded scores."""

import json

from bench.mutation import TARGETS, keep_previous


def test_a_run_of_one_module_keeps_the_others_records(tmp_path):
    prev = {"tool": "mutmut", "score_camera": 0.97, "score_camera_se": 0.03, "status_camera": "partial",
            "counts_camera": {"total": 606}, "surviving_camera": ["m1"], "status_linear": "not run"}
    path = tmp_path / "mutation.json"
    path.write_text(json.dumps(prev))
    res = {"tool": "mutmut", **{f"status_{k}": "not run" for k in TARGETS}}
    res.update(score_calibration=0.5, status_calibration="complete")
    out = keep_previous(res, path)
    assert out["score_camera"] == 0.97 and out["score_camera_se"] == 0.03
    assert out["status_camera"] == "partial" and out["surviving_camera"] == ["m1"]
    assert out["counts_camera"] == {"total": 606}
    assert out["score_calibration"] == 0.5 and out["status_calibration"] == "complete"  # the new run wins
    assert out["status_linear"] == "not run" and "score_linear" not in out
    assert keep_previous(res, tmp_path / "absent.json") == res
