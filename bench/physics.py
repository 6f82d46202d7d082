"""Physics-model speed, side by side in one run (issue 2). Writes bench/results/physics.json.

Ratios (higher is better):

* ``ratio_vs_gemm``: the bare floor (two float32 GEMMs X Re(B), X Im(B) and |.|^2, numpy) over
  our model producing noisy, quantized camera frames (realistic preset): goal >= 0.9 (issue 17;
  0.75 in issue 2).
* ``ratio_vs_lightonml``: lightonml 1.4.3's simulated ``OPU.transform`` (noiseless, float32) over
  ours, same shapes: goal >= 2 (issue 17; 1.5 in issue 2).
* ``tm_ratio_vs_lightonml``: construction of a 10000 x 10000 device to its first transformed
  vector, lightonml over ours: goal >= 4 (issue 17; 3 in issue 2).
* ``stream_peak_gib``: peak resident memory of a process that transforms a batch through a
  100000-input x 10000-output device streamed in blocks (8 GB as a dense complex64 matrix):
  goal < 1 GiB. Measured in a child process (``VmHWM``), interpreter and JAX runtime included.

Shapes: batch 1000, n = m = 4096, half the mirrors lit. Timings are the median of ``--repeats``
runs after one warm-up. Run: ``make bench`` or ``.venv/bin/python bench/physics.py``.
The JSON records the machine (``machine``: CPU model, vector extensions, load average; bench/machine.py).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import opu  # noqa: E402
from bench.machine import machine_info  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def _interleaved_medians(fns: dict, repeats: int) -> dict:
    """Median seconds of each callable, timed in rotation (one call of each per round, after one
    warm-up call each), so that a slow spell of a shared machine hits every contender alike."""
    for fn in fns.values():
        fn()  # warm-up: compilation, caches, matrix generation
    times: dict = {k: [] for k in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_throughput(batch: int, n: int, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    x = rng.random((batch, n)) < 0.5
    sim = opu.Simulator(opu.realistic(seed=0, n_outputs=n), n_features=n)
    w = np.asarray(sim.medium.w)
    re_b, im_b = np.ascontiguousarray(w[:, :n]), np.ascontiguousarray(w[:, n:])
    xf = x.astype(np.float32)

    def floor() -> np.ndarray:
        a = xf @ re_b
        b = xf @ im_b
        return a * a + b * b

    fns = {"floor": floor, "ours": lambda: sim.acquire(x)}
    try:
        from lightonml import OPU
    except ImportError:
        OPU = None
    if OPU is not None:
        lopu = OPU(n_components=n, max_n_features=n, simulated=True, disable_pbar=True)
        lopu.fit1d(n_features=n)
        xu8 = x.astype(np.uint8)
        fns["lightonml"] = lambda: lopu.transform(xu8)
    t = _interleaved_medians(fns, repeats)
    out = {
        "shape": {"batch": batch, "n": n, "m": n},
        "repeats_interleaved": repeats,
        "seconds_gemm_floor": t["floor"],
        "seconds_ours_noisy_frames": t["ours"],
        "ratio_vs_gemm": t["floor"] / t["ours"],
    }
    if OPU is None:
        out["ratio_vs_lightonml"] = None
        out["lightonml"] = "not installed (make bench installs it)"
        return out
    lopu.close()
    out["seconds_lightonml_transform"] = t["lightonml"]
    out["ratio_vs_lightonml"] = t["lightonml"] / t["ours"]
    return out


def bench_first_vector(size: int) -> dict:
    x = np.random.default_rng(1).random(size) < 0.5
    t0 = time.perf_counter()
    sim = opu.Simulator(opu.realistic(seed=0, n_outputs=size), n_features=size)
    sim.acquire(x)
    t_ours = time.perf_counter() - t0
    del sim
    out = {"size": size, "seconds_ours_first_vector": t_ours}
    try:
        from lightonml import OPU
    except ImportError:
        out["tm_ratio_vs_lightonml"] = None
        return out
    t0 = time.perf_counter()
    lopu = OPU(n_components=size, max_n_features=size, simulated=True, disable_pbar=True)
    lopu.fit1d(n_features=size)
    lopu.transform(x.astype(np.uint8))
    t_lopu = time.perf_counter() - t0
    lopu.close()
    out["seconds_lightonml_first_vector"] = t_lopu
    out["tm_ratio_vs_lightonml"] = t_lopu / t_ours
    return out


def _stream_child(n: int, m: int, batch: int) -> None:
    cfg = opu.realistic(seed=0, n_outputs=m).replace(medium={"drift_time_constant_s": None})
    # 100000 features need macro-pixels of at most 3 mirrors: (912 // 3) * (1140 // 3) = 115520
    cfg = cfg.replace(dmd={"macro_pixel_mirrors": 3})
    sim = opu.Simulator(cfg, n_features=n, tm_mode="streamed", stream_block_features=1024)
    x = np.random.default_rng(2).random((batch, n)) < 0.5
    t0 = time.perf_counter()
    frames = sim.acquire(x)
    elapsed = time.perf_counter() - t0
    print(
        json.dumps({"seconds": elapsed, "peak_bytes": _peak_rss_bytes(), "frames_shape": list(frames.shape)})
    )


def _peak_rss_bytes() -> int:
    """Peak resident memory of this process image. ``ru_maxrss`` survives ``execve`` and would
    report the forking parent's peak, so read the kernel's high-water mark of this image."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def bench_stream(n: int, m: int, batch: int) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--stream-child", str(n), str(m), str(batch)],
        capture_output=True,
        text=True,
        check=True,
    )
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        "n": n,
        "m": m,
        "batch": batch,
        "dense_complex64_gib": 8 * n * m / 2**30,
        "seconds": child["seconds"],
        "stream_peak_gib": child["peak_bytes"] / 2**30,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--quick", action="store_true", help="smaller shapes (smoke test)")
    parser.add_argument("--stream-child", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stream_child:
        _stream_child(*args.stream_child)
        return
    batch, n, big, sn, sm = (1000, 4096, 10_000, 100_000, 10_000)
    if args.quick:
        batch, n, big, sn, sm = (200, 1024, 2000, 10_000, 1000)
    result = {"command": "make bench  (or: .venv/bin/python bench/physics.py)", "machine": machine_info()}
    result.update(throughput=bench_throughput(batch, n, args.repeats))
    result.update(first_vector=bench_first_vector(big))
    result.update(stream=bench_stream(sn, sm, batch=8))
    result["ratio_vs_gemm"] = result["throughput"]["ratio_vs_gemm"]
    result["ratio_vs_lightonml"] = result["throughput"].get("ratio_vs_lightonml")
    result["tm_ratio_vs_lightonml"] = result["first_vector"].get("tm_ratio_vs_lightonml")
    result["stream_peak_gib"] = result["stream"]["stream_peak_gib"]
    goals = {
        "ratio_vs_gemm": (">=", 0.9),
        "ratio_vs_lightonml": (">=", 2.0),
        "tm_ratio_vs_lightonml": (">=", 4.0),
        "stream_peak_gib": ("<", 1.0),
    }
    result["goals"] = {}
    for key, (op, goal) in goals.items():
        value = result[key]
        met = None if value is None else (value >= goal if op == ">=" else value < goal)
        result["goals"][key] = {"goal": f"{op} {goal}", "value": value, "met": met}
        shown = "n/a" if value is None else f"{value:.3f}"
        verdict = "" if met is None else ("  ok" if met else "  MISSED")
        print(f"{key:24s} {shown:>8s}  (goal {op} {goal}){verdict}")
    m = result["machine"]
    print(f"machine: {m['cpu_model']} ({m['widest_vector_isa']}), load {m['load_average_1_5_15']}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "physics_quick.json" if args.quick else "physics.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2))
    print(f"wrote {RESULTS / name}")


if __name__ == "__main__":
    main()
