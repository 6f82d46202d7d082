"""Hardware-size devices and many runs at once (issue 15). Writes bench/results/scale.json.

Keys (goals in brackets):

* ``full_size_frames_per_s`` [>= 2 on 2 cores]: structured medium, the full 1,039,680-mirror DMD to
  the 2,073,600-pixel sensor (``opu.realistic(full_size=True)``), half the mirrors lit, noisy 8-bit
  frames, batch 8 (median of ``--repeats`` batches after a warm-up); ``full_size_frames_per_cpu_s``:
  the same per CPU-second of the process (its rate without contention, on one core);
  ``full_size_peak_gib`` [< 4]:
  peak resident memory (VmHWM) of that child process, interpreter and JAX included.
* ``structured_kernel_rel_err`` [<= 0.02]: the optical kernel E|b.x|^2|b.x'|^2 measured over the
  pixels of ``--kernel-media`` structured media at n = m = 65,536, against the closed form
  |x|^2|x'|^2 + <x,x'>^2 (its statistical standard error is reported beside it);
  ``structured_contrast`` [|c - 1| <= 0.02]: std/mean of the noiseless full-size intensity.
* ``shard_equal`` [true]: the i.i.d. field sharded on 8 virtual CPU devices is bit-identical to 1
  device; ``shard_overhead``: time on 8 / time on 1 (no speed-up expected on 2 cores);
  ``shard_peak_device_mib``: XLA's per-device figure (output share + temporaries).
* ``gpu_frames_per_s_iid_full_size``: exact i.i.d. medium at full size on the GPU(s) JAX sees
  (sharded over them), batch 8 half lit, noisy 8-bit frames; null without a GPU.
* ``sweep_speedup_2workers`` [>= 1.5]: 8 short digits optical-DFA trainings (``--sweep-epochs``,
  default 20, of the 1437 training digits, hidden 64, read noise 0-100 e- x 2 seeds; about 10 s
  each), one after the other in this process vs ``opu sweep`` on a local Ray instance with 2
  workers. Ray's fixed costs (start-up, one fresh worker process per slot that imports and
  compiles once) are about 10 s per sweep: with 3-s trials (5 epochs) they outweigh the second
  core (0.88 on a quiet 2-core machine).
* ``--only trainer`` (not run by default, ~6.5 GiB): optical DFA through the full-size device with a
  sensor-wide hidden layer (smoke run: ``trainer_full_size_*``).

Each section runs in its own child process (clean peak memory; XLA's host device count must be
set before JAX loads). The machine load (``os.getloadavg``) is recorded with every timing.

    .venv/bin/python bench/scale.py            # full configuration
    .venv/bin/python bench/scale.py --quick    # fewer repeats, 4 sweep trials, 2 kernel media
    .venv/bin/python bench/scale.py --only gpu # on a GPU machine: just the i.i.d. full-size rate
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
N_FULL, M_FULL = 1_039_680, 2_073_600


def _peak_gib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def _load() -> float:
    return round(os.getloadavg()[0], 2)


# ---------------------------------------------------------------------------------- child sections
def section_full(args) -> dict:
    import numpy as np

    import opu

    cfg = opu.realistic(seed=0, full_size=True).replace(
        camera={"exposure_us": 1.0}, medium={"drift_time_constant_s": None})  # half lit: mid-range
    sim = opu.Simulator(cfg, n_features=cfg.dmd.max_features)
    x = np.random.default_rng(0).random((8, N_FULL)) < 0.5
    sim.acquire(x)  # warm-up (compilation)
    times, cpu, loads = [], [], []
    for _ in range(args.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        frames = sim.acquire(x)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        loads.append(_load())
    assert frames.shape == (8, M_FULL) and frames.dtype == np.uint8
    i = np.asarray(sim.intensity(x[:1]), dtype=np.float64).ravel()
    return {
        "full_size_frames_per_s": round(8 / statistics.median(times), 3),
        # frames per CPU-second of this process (all its threads): the rate without contention from
        # other processes, on one core; on a quiet 2-core machine the wall rate is between this and 2x
        "full_size_frames_per_cpu_s": round(8 / statistics.median(cpu), 3),
        "full_size_batch_s": [round(t, 3) for t in times],
        # CPU seconds of this process per batch (all threads): what the batch costs without contention
        "full_size_cpu_s_per_batch": [round(c, 3) for c in cpu],
        "full_size_peak_gib": round(_peak_gib(), 3),
        "structured_contrast": round(float(i.std() / i.mean()), 5),
        "structured_mean_over_lit": round(float(i.mean() / x[0].sum()), 5),
        "full_size_frame_mean_dn": round(float(frames.mean()), 2),
        "full_size_saturated_frac": round(float((frames == 255).mean()), 5),
        "load_avg_full_size": loads,
    }


def section_kernel(args) -> dict:
    import numpy as np

    from opu.structured import StructuredMedium

    n = m = 65_536
    x = np.zeros(n, np.float32)
    xp = np.zeros(n, np.float32)
    k1, k2, ov = 8192, 12_288, 2048
    x[:k1] = 1
    xp[k1 - ov : k1 - ov + k2] = 1
    expected = k1 * k2 + ov**2
    prods = []
    for s in range(args.kernel_media):
        i = np.asarray(StructuredMedium(1000 + s, n, m).intensity(np.stack([x, xp])), dtype=np.float64)
        prods.append(i[0] * i[1])
    p = np.concatenate(prods)
    return {
        "structured_kernel_rel_err": round(abs(p.mean() / expected - 1), 5),
        "structured_kernel_stat_se": round(p.std() / np.sqrt(p.size) / expected, 5),
        "structured_kernel_media": args.kernel_media,
        "structured_kernel_without_interference_rel": round(abs(p.mean() / (k1 * k2) - 1), 5),
    }


def section_shard(args) -> dict:
    import jax
    import numpy as np

    from opu.medium import TransmissionMatrix
    from opu.sharded import compiled_memory, make_mesh, sharded_field

    assert len(jax.devices()) == 8, jax.devices()
    rng = np.random.default_rng(0)
    m, n, b = 16_384, 2048, 8
    tm = TransmissionMatrix(5, np.arange(m, dtype=np.uint32), np.arange(n, dtype=np.uint32))
    x = rng.random((b, n)) < 0.5
    out, times = {}, {}
    for d in (1, 8):
        mesh = make_mesh(jax.devices()[:d])
        sharded_field(tm, x, mesh)  # warm-up
        t = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out[d] = sharded_field(tm, x, mesh)
            t.append(time.perf_counter() - t0)
        times[d] = statistics.median(t)
    mem = {d: compiled_memory(tm, b, int(x.any(axis=0).sum()), make_mesh(jax.devices()[:d])) for d in (1, 8)}
    per_dev = {d: ((mem[d]["output_size_in_bytes"] or 0) + (mem[d]["temp_size_in_bytes"] or 0)) / 2**20
               for d in (1, 8)}
    return {
        "shard_equal": bool(np.array_equal(out[1][0], out[8][0]) and np.array_equal(out[1][1], out[8][1])),
        "shard_overhead": round(times[8] / times[1], 3),
        "shard_time_1_s": round(times[1], 3),
        "shard_time_8_s": round(times[8], 3),
        "shard_shape": {"b": b, "n": n, "m": m},
        "shard_peak_device_mib": {str(d): round(v, 2) for d, v in per_dev.items()},
        "load_avg_shard": _load(),
    }


def section_gpu(args) -> dict:
    import jax
    import numpy as np

    import opu

    n, m = (int(v) for v in args.iid_size.split(","))
    if jax.default_backend() == "cpu" and not args.iid_on_cpu:
        return {"gpu_frames_per_s_iid_full_size": None,
                "gpu_note": "no GPU visible to JAX here (run `bench/scale.py --only gpu` on a GPU machine)"}
    cfg = opu.realistic(seed=0, full_size=True, medium_kind="iid").replace(
        camera={"exposure_us": 1.0 * N_FULL / n}, medium={"drift_time_constant_s": None})
    if m != M_FULL:
        cfg = cfg.with_outputs(m)
    sim = opu.Simulator(cfg, n_features=n, tm_mode="sharded")
    rng = np.random.default_rng(0)
    small = np.zeros((8, n), bool)
    small[:, :4096] = rng.random((8, min(n, 4096))) < 0.5
    sim.acquire(small)  # compile the tile kernel and the camera for this batch shape
    x = rng.random((8, n)) < 0.5
    t0 = time.perf_counter()
    frames = sim.acquire(x)  # includes one recompilation for the number of feature blocks
    t_first = time.perf_counter() - t0
    t = t_first
    if t_first < args.gpu_second_run_below_s:
        t0 = time.perf_counter()
        frames = sim.acquire(x)
        t = time.perf_counter() - t0
    key = "gpu_frames_per_s_iid_full_size" if (n, m) == (N_FULL, M_FULL) else "iid_frames_per_s_reduced"
    return {
        key: round(8 / t, 4),
        "gpu_iid_size": [n, m],
        "gpu_batch_s": round(t, 3),
        "gpu_first_batch_s": round(t_first, 3),
        "gpu_devices": [str(d) for d in jax.devices()],
        "gpu_entries_per_s": round(float(x.any(axis=0).sum()) * m / t, 1),
        "gpu_frame_mean_dn": round(float(frames.mean()), 2),
    }


def _sweep_spec(n_trials: int, epochs: int):
    from host.sweep import SweepSpec

    return SweepSpec.model_validate({
        "metric": "test_accuracy",
        "train": {"mode": "optical-dfa", "epochs": epochs, "hidden": [64], "batch_size": 64,
                  "alignment_batch": 64},
        "device": {"preset": "realistic", "changes": {"medium": {"drift_time_constant_s": None}}},
        "grid": {"device.camera.read_noise_e": [0.0, 20.0, 50.0, 100.0][: max(1, n_trials // 2)],
                 "train.seed": [0, 1]},
        "jax_threads": 1,
    })


def section_sweep(args) -> dict:
    from host.sweep import run_sweep, run_trial, trial_id

    spec = _sweep_spec(args.sweep_trials, args.sweep_epochs)
    trials = [(trial_id(i, p), p) for i, p in enumerate(spec.trials())]
    with tempfile.TemporaryDirectory() as tmp:
        load0 = _load()
        t0 = time.perf_counter()
        rows = [run_trial(spec, tid, p, Path(tmp) / "seq" / tid) for tid, p in trials]
        t_seq = time.perf_counter() - t0
        load1 = _load()
        t0 = time.perf_counter()
        report = run_sweep(spec, Path(tmp) / "ray", workers=2, log=lambda s: None)
        t_ray = time.perf_counter() - t0
        load2 = _load()
        from host.sweep.table import read_rows

        ray_walls = [r["wall_s"] for r in read_rows(report.out_dir) if "wall_s" in r]
    return {
        "sweep_speedup_2workers": round(t_seq / t_ray, 3),
        "sweep_sequential_s": round(t_seq, 1),
        "sweep_ray_2workers_s": round(t_ray, 1),
        "sweep_trials": len(trials),
        "sweep_epochs": args.sweep_epochs,
        "sweep_sequential_trial_s": [r["wall_s"] for r in rows],
        "sweep_ray_trial_s": ray_walls,
        # trials running at once on average: sum of trial times / sweep time (2 = both workers busy)
        "sweep_ray_concurrency": round(sum(ray_walls) / t_ray, 3),
        "sweep_ok": {"sequential": sum(r["status"] == "ok" for r in rows), "ray": report.ok},
        "load_avg_sweep": [load0, load1, load2],
    }


def section_trainer(args) -> dict:
    """Smoke run (not in the default list: ~6.5 GiB): optical DFA on digits through the full-size
    structured device, one hidden layer as wide as the sensor (2,073,600 units), 16 samples, 1 epoch."""
    import opu
    from host.train import TrainConfig, train

    with tempfile.TemporaryDirectory() as tmp:
        dev = Path(tmp) / "full.json"
        dev.write_text(opu.realistic(seed=0, full_size=True).replace(
            medium={"drift_time_constant_s": None}).model_dump_json())
        cfg = TrainConfig(mode="optical-dfa", dataset="digits", hidden=(M_FULL,), batch_size=8,
                          max_train_samples=16, epochs=1, alignment_batch=8, device=f"sim:{dev}", seed=0)
        t0 = time.perf_counter()
        res = train(cfg, Path(tmp) / "run", progress=False)
        wall = time.perf_counter() - t0
    f = res.final
    return {"trainer_full_size_ok": True, "trainer_full_size_wall_s": round(wall, 1),
            "trainer_full_size_frames": f["frames_total"],
            "trainer_full_size_test_accuracy": f["test_accuracy"],
            "trainer_full_size_peak_gib": round(_peak_gib(), 2), "load_avg_trainer": _load()}


#: sections run by default (``trainer`` only with --only trainer)
DEFAULT = ["full", "kernel", "shard", "gpu", "sweep"]
SECTIONS = {"trainer": section_trainer, "full": section_full, "kernel": section_kernel,
            "shard": section_shard, "gpu": section_gpu, "sweep": section_sweep}


def _child(name: str, args: argparse.Namespace) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if name == "shard":
        env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    cmd = [sys.executable, __file__, "--section", name, "--repeats", str(args.repeats),
           "--kernel-media", str(args.kernel_media), "--sweep-trials", str(args.sweep_trials),
           "--sweep-epochs", str(args.sweep_epochs),
           "--gpu-second-run-below-s", str(args.gpu_second_run_below_s), "--iid-size", args.iid_size]
    if args.iid_on_cpu:
        cmd.append("--iid-on-cpu")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        return {f"{name}_error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res[f"{name}_section_s"] = round(time.perf_counter() - t0, 1)
    return res


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="2 repeats, 2 kernel media, 4 sweep trials")
    p.add_argument("--only", nargs="+", choices=sorted(SECTIONS), help="run these sections only")
    p.add_argument("--section", choices=sorted(SECTIONS), help=argparse.SUPPRESS)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--kernel-media", type=int, default=None)
    p.add_argument("--sweep-trials", type=int, default=None)
    p.add_argument("--sweep-epochs", type=int, default=None, help="epochs per sweep trial (default 20)")
    p.add_argument("--gpu-second-run-below-s", type=float, default=120.0,
                   help="time a second full-size GPU batch when the first took less than this")
    p.add_argument("--iid-size", default=f"{N_FULL},{M_FULL}",
                   help="n,m of the i.i.d. device of the gpu section (default: full size)")
    p.add_argument("--iid-on-cpu", action="store_true",
                   help="run the gpu section on the CPU too (with a small --iid-size: a dry run)")
    args = p.parse_args()
    args.repeats = args.repeats or (2 if args.quick else 5)
    args.kernel_media = args.kernel_media or (2 if args.quick else 4)
    args.sweep_trials = args.sweep_trials or (4 if args.quick else 8)
    args.sweep_epochs = args.sweep_epochs or (1 if args.quick else 20)
    if args.section:
        sys.path.insert(0, str(ROOT))
        print(json.dumps(SECTIONS[args.section](args)))
        return 0
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "scale.json"
    result = json.loads(path.read_text()) if args.only and path.is_file() else {}
    result.update({"quick": args.quick, "cpu_count": os.cpu_count(), "load_avg_start": _load()})
    for name in args.only or DEFAULT:
        print(f"[scale] {name} ...", flush=True)
        result.update(_child(name, args))
        path.write_text(json.dumps(result, indent=1))
    result["load_avg_end"] = _load()
    path.write_text(json.dumps(result, indent=1))
    keys = ["full_size_frames_per_s", "full_size_frames_per_cpu_s", "full_size_peak_gib",
            "structured_kernel_rel_err",
            "structured_contrast",
            "shard_equal", "shard_overhead", "gpu_frames_per_s_iid_full_size", "sweep_speedup_2workers"]
    for k in keys:
        print(f"{k:34s} {result.get(k)}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
