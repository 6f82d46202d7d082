"""Driver benchmark (issue 3): frame throughput over VISA and the cost of the wire for a DFA workload.

    .venv/bin/python bench/driver.py            # writes bench/results/driver.json

* ``visa_frame_mb_per_s``: 2 MiB ``FETC:FRAM?`` frame blocks over loopback through
  ``drivers.VisaDevice.fetch_frames`` (goal >= 300), next to plain pyvisa-py
  ``query_binary_values`` of the same block in the same run;
* ``wire_over_inprocess``: time of the reference DFA workload - 256 ternary error vectors of 1024
  entries projected to 1024 outputs with the anchor scheme (``device.linear_transform``, 1024 frames)
  - through the VISA path divided by the same through the in-process path (goal <= 1.25);
* ``lightonml_over_inprocess`` (issue 14; reported, no goal): the same DFA workload through the
  lightonml backend (``lightonml:simulated``: lightonml 1.4.3's ``OPU.transform`` on its
  ``SimulatedOpuDevice``, 2048 x 1024 matrix) divided by the in-process path, measured side by side.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import drivers  # noqa: E402
import opu  # noqa: E402
from drivers.sim import SimDevice  # noqa: E402
from firmware_models import Controller  # noqa: E402
from firmware_models.server import serve  # noqa: E402

BLOCK_FRAMES, BLOCK_PIXELS = 2048, 1024  # 2048 uint8 frames of 32 x 32 px = 2 MiB
FETCH_REPS = 30
DFA_BATCH, DFA_N, DFA_M = 256, 1024, 1024
DFA_REPS = 7


def _config() -> opu.OPUConfig:
    return opu.realistic(seed=0, n_outputs=DFA_M)


def _median_time(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_frames(resource: str) -> dict:
    nbytes = BLOCK_FRAMES * BLOCK_PIXELS
    with drivers.connect(resource, timeout_s=30) as dev:
        dev.configure(n_features=64, macro_pixel_mirrors=8)
        assert dev.n_outputs == BLOCK_PIXELS
        x = np.random.default_rng(0).integers(0, 2, size=(BLOCK_FRAMES, 64), dtype=np.uint8)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", drivers.SaturationWarning)
            ref = dev.acquire(x, progress=False)
        fast = dev.uses_fast_io
        got = dev.fetch_frames(0, BLOCK_FRAMES)
        assert np.array_equal(got, ref)
        t_driver = _median_time(lambda: dev.fetch_frames(0, BLOCK_FRAMES), FETCH_REPS)

    import pyvisa

    rm = pyvisa.ResourceManager("@py")
    res = rm.open_resource(resource, read_termination="\n", write_termination="\n", timeout=30_000)
    try:
        def plain():
            return res.query_binary_values(f"FETC:FRAM? 0,{BLOCK_FRAMES}", datatype="B",
                                           container=np.ndarray)
        assert np.array_equal(plain().reshape(ref.shape), ref)
        t_plain = _median_time(plain, max(3, FETCH_REPS // 5))
    finally:
        res.close()
        rm.close()
    return {
        "block_bytes": nbytes,
        "fast_io": fast,
        "visa_frame_mb_per_s": nbytes / t_driver / 1e6,
        "pyvisa_query_binary_values_mb_per_s": nbytes / t_plain / 1e6,
        "driver_over_plain_pyvisa": t_plain / t_driver,
    }


def _dfa(dev: drivers.Device, errors: np.ndarray) -> float:
    dev.configure(camera_roi=opu.centred_roi(DFA_M).model_dump(), exposure_us=100.0, frame_time_us=200.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", drivers.SaturationWarning)
        dev.linear_transform(errors)  # calibration + JIT warm-up
        return _median_time(lambda: dev.linear_transform(errors), DFA_REPS)


def bench_dfa(resource: str) -> dict:
    rng = np.random.default_rng(1)
    errors = (rng.choice([-1, 1], size=(DFA_BATCH, DFA_N)) * (rng.random((DFA_BATCH, DFA_N)) < 0.5))
    errors = errors.astype(np.int8)
    with SimDevice(Controller(_config()), resource="sim").open() as dev:
        t_local = _dfa(dev, errors)
        frames = dev.frames_acquired
    with drivers.connect(resource, timeout_s=60) as dev:
        t_wire = _dfa(dev, errors)
    return {
        "dfa_batch": DFA_BATCH, "dfa_n": DFA_N, "dfa_m": DFA_M,
        "dfa_frames_per_call": 4 * DFA_BATCH,
        "dfa_warmup_frames": frames - 4 * DFA_BATCH * DFA_REPS,
        "dfa_inprocess_s": t_local,
        "dfa_visa_s": t_wire,
        "wire_over_inprocess": t_wire / t_local,
    }


#: lightonml's simulated camera gain for the DFA workload: ~1500 lit features x 100 us x 2e-4 = 30 DN
#: mean, like the in-process device's unsaturated frames (the default 0.01 would clip everything)
LIGHTONML_DN_PER_FEATURE_US = 2e-4


def bench_lightonml() -> dict:
    """The DFA workload through lightonml:simulated and in-process, side by side in one run."""
    rng = np.random.default_rng(1)
    errors = (rng.choice([-1, 1], size=(DFA_BATCH, DFA_N)) * (rng.random((DFA_BATCH, DFA_N)) < 0.5))
    errors = errors.astype(np.int8)
    with SimDevice(Controller(_config()), resource="sim").open() as dev:
        t_local = _dfa(dev, errors)
    with drivers.connect("lightonml:simulated", max_n_features=2 * DFA_N, n_components=DFA_M,
                         dn_per_feature_us=LIGHTONML_DN_PER_FEATURE_US) as dev:
        t_lightonml = _dfa(dev, errors)
        version = dev.identity.firmware
    return {"lightonml_version": version, "dfa_inprocess_again_s": t_local, "dfa_lightonml_s": t_lightonml,
            "lightonml_over_inprocess": t_lightonml / t_local}


def main() -> dict:
    with serve(Controller(_config()), host="127.0.0.1", port=0) as srv:
        result = {"resource_kind": "TCPIP SOCKET over loopback, pyvisa-py"}
        result.update(bench_frames(srv.resource))
    with serve(Controller(_config()), host="127.0.0.1", port=0) as srv:
        result.update(bench_dfa(srv.resource))
    result.update(bench_lightonml())
    result["goals"] = {"visa_frame_mb_per_s": ">= 300", "wire_over_inprocess": "<= 1.25",
                       "lightonml_over_inprocess": "reported, no goal"}
    out = ROOT / "bench" / "results" / "driver.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"visa_frame_mb_per_s      {result['visa_frame_mb_per_s']:8.1f}  (goal >= 300; plain pyvisa "
          f"query_binary_values {result['pyvisa_query_binary_values_mb_per_s']:.1f} MB/s, "
          f"x{result['driver_over_plain_pyvisa']:.1f})")
    print(f"wire_over_inprocess      {result['wire_over_inprocess']:8.3f}  (goal <= 1.25; DFA "
          f"{result['dfa_visa_s'] * 1e3:.1f} ms over VISA vs {result['dfa_inprocess_s'] * 1e3:.1f} ms "
          "in-process)")
    print(f"lightonml_over_inprocess {result['lightonml_over_inprocess']:8.3f}  (no goal; DFA "
          f"{result['dfa_lightonml_s'] * 1e3:.1f} ms through {result['lightonml_version']} simulated vs "
          f"{result['dfa_inprocess_again_s'] * 1e3:.1f} ms in-process)")
    print(f"wrote {out.relative_to(ROOT)}")
    return result


if __name__ == "__main__":
    main()
