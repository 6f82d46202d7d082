"""Per-kernel cost of the physics path (issue 17) -> bench/results/kernels.json.

CPU time per value (all threads, ``time.process_time``; the minimum over ``--repeats`` runs after a
warm-up), so that the figures mean something on a machine shared with other jobs; wall times are
recorded too. Kernels: W generation (ns per complex entry B_ij, dense build and the lit-feature
path's generate-and-multiply), the camera's Gaussian pass (ns per pixel), its exact-Poisson pass
(ns per dim pixel), and for scale the dense GEMM X W (ns per pixel of a 4096-input frame).

    .venv/bin/python bench/kernels.py [--quick]
    XLA_FLAGS=--xla_cpu_max_isa=AVX2 .venv/bin/python bench/kernels.py   # the AVX2 code path
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import opu  # noqa: E402
from bench.machine import machine_info  # noqa: E402
from opu.camera import Camera  # noqa: E402
from opu.medium import TransmissionMatrix, streamed_field  # noqa: E402


def _min_times(fn, repeats: int) -> tuple[float, float]:
    """(min CPU seconds, min wall seconds) of fn() over ``repeats`` runs after one warm-up."""
    jax.block_until_ready(fn())
    cpu, wall = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        jax.block_until_ready(fn())
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return min(cpu), min(wall)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    machine = machine_info()
    m = n = 1024 if args.quick else 4096
    b = 256 if args.quick else 1000
    ids = np.arange(m, dtype=np.uint32)
    tm = TransmissionMatrix(0, ids, np.arange(n, dtype=np.uint32))
    rows = {}

    def record(name: str, unit: str, count: int, fn) -> None:
        cpu, wall = _min_times(fn, args.repeats)
        rows[name] = {"unit": unit, "cpu_ns": 1e9 * cpu / count, "wall_ns": 1e9 * wall / count,
                      "count": count}
        print(f"{name:36s} {1e9 * cpu / count:8.2f} ns/{unit} CPU   {1e9 * wall / count:8.2f} wall")

    record("w_dense (W build)", "entry", m * n, lambda: tm.w_dense())
    lit = np.arange(0, n, 2)
    x1 = np.ones((1, lit.size), np.float32)
    record("lit path, 1 vector (generate+GEMV)", "entry", m * lit.size,
           lambda: streamed_field(tm, x1, features=np.arange(lit.size)))
    cfg = opu.realistic(seed=0, n_outputs=m)
    cam = Camera(cfg.camera, 0)
    rng = np.random.default_rng(0)
    bright = rng.exponential(1.0, (b, m)).astype(np.float32)
    ppu = 2048 * cfg.laser.photons_per_mirror_us * cfg.camera.exposure_us  # 2048 lit mirrors
    frames = np.arange(b)
    record("camera, Gaussian pass", "pixel", b * m, lambda: cam.expose(bright, ppu, frames, 0.005))
    dim = bright * (5.0 / ppu)  # mean ~3 e-: every pixel takes the exact-Poisson pass as well
    t_dim = _min_times(lambda: cam.expose(dim, ppu, frames, 0.005), args.repeats)
    g = rows["camera, Gaussian pass"]
    rows["camera, exact-Poisson pass"] = {
        "unit": "dim pixel", "cpu_ns": 1e9 * t_dim[0] / (b * m) - g["cpu_ns"],
        "wall_ns": 1e9 * t_dim[1] / (b * m) - g["wall_ns"], "count": b * m}
    print(f"{'camera, exact-Poisson pass':36s} {rows['camera, exact-Poisson pass']['cpu_ns']:8.2f} "
          "ns/dim pixel CPU (on top of the Gaussian pass)")
    sim = opu.Simulator(cfg, n_features=n)
    x = (rng.random((b, n)) < 0.5)
    _ = sim.medium.w
    from opu.model import _intensity_dense

    xf = x.astype(np.float32)
    record("dense GEMM |XW|^2 (JAX)", "pixel", b * m, lambda: _intensity_dense(xf, sim.medium.w))
    w = np.asarray(sim.medium.w)
    re_b, im_b = np.ascontiguousarray(w[:, :m]), np.ascontiguousarray(w[:, m:])
    record("numpy floor X ReB, X ImB, |.|^2", "pixel", b * m, lambda: (xf @ re_b) ** 2 + (xf @ im_b) ** 2)
    record("acquire (GEMM + camera)", "pixel", b * m, lambda: sim.acquire(x))
    out = {"command": ".venv/bin/python bench/kernels.py" + (" --quick" if args.quick else ""),
           "machine": machine, "shape": {"batch": b, "n": n, "m": m}, "kernels": rows}
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    name = "kernels_quick.json" if args.quick else "kernels.json"
    if "xla_cpu_max_isa" in (machine.get("xla_flags") or ""):
        name = name.replace(".json", "_maxisa.json")
    (ROOT / "bench" / "results" / name).write_text(json.dumps(out, indent=2))
    print(f"machine: {machine['cpu_model']} ({machine['widest_vector_isa']}), "
          f"load {machine['load_average_1_5_15']}")
    print(f"wrote bench/results/{name}")


if __name__ == "__main__":
    main()
