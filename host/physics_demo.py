"""A short physics demonstration of a simulated OPU: ``python -m host.physics_demo [--out DIR]``.

Prints the speckle and camera-noise statistics of the realistic device next to the values the
physics predicts, and writes ``DIR/physics_demo.png`` (speckle image, intensity histogram against
the exponential law, photon transfer curve).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import opu


def run(out_dir: Path, seed: int = 0) -> dict[str, float]:
    """Simulate, print the statistics table, write the figure; returns the measured figures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, m, lit = 1024, 4096, 512
    cfg = opu.realistic(seed=seed, n_outputs=m).replace(medium={"drift_time_constant_s": None})
    sim = opu.Simulator(cfg, n_features=n)
    rng = np.random.default_rng(seed)
    x = np.zeros((64, n), dtype=bool)
    for row in x:
        row[rng.choice(n, size=lit, replace=False)] = True
    intensity = sim.intensity(x).astype(np.float64)
    frames = sim.acquire(np.repeat(x[:1], 100, axis=0)).astype(np.float64)
    cam = cfg.camera
    k = cam.system_gain_dn_per_e
    photo_e = intensity[0] * sim.photons_per_unit_intensity * cam.quantum_efficiency
    z = (intensity - intensity.mean()) / intensity.std()
    figures = {
        "mean |Bx|^2 / lit mirrors (expect 1)": intensity.mean() / lit,
        "speckle contrast std/mean (expect 1)": intensity.std() / intensity.mean(),
        "neighbour correlation (expect 0)": float((z[:, :-1] * z[:, 1:]).mean()),
        "mean signal, DN": frames.mean(),
        "saturated pixels, %": 100 * (frames >= cam.adc_max_dn).mean(),
        "frames acquired": float(sim.clock.frames),
        "device time, ms": 1e3 * sim.clock.device_time_s,
    }
    print(f"Simulated OPU: {n} features -> {m} pixels, {lit} lit mirrors, seed {seed}")
    for name, value in figures.items():
        print(f"  {name:40s} {value:10.4f}")

    mean_t = frames.mean(axis=0)
    var_t = frames.var(axis=0, ddof=1)
    dark = sim.dark_frame_mean_dn()
    mu = np.linspace(dark.mean(), min(mean_t.max(), 0.95 * cam.adc_max_dn), 100)
    dark_e = cam.dark_current_e_per_s * cam.exposure_us * 1e-6
    sigma_d2 = cam.read_noise_e**2 + dark_e
    emva = k**2 * sigma_d2 + 1 / 12 + k * (mu - dark.mean())

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    side = int(np.sqrt(m))
    im = axes[0].imshow(frames[0].reshape(side, side), cmap="gray")
    axes[0].set_title("one camera frame (uint8 speckle)")
    fig.colorbar(im, ax=axes[0], label="DN")
    axes[1].hist(intensity.ravel() / lit, bins=80, density=True, alpha=0.7, label="simulated")
    grid = np.linspace(0, 8, 200)
    axes[1].plot(grid, np.exp(-grid), "k", label="exponential law")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("|Bx|^2 / lit mirrors")
    axes[1].set_title("fully developed speckle")
    axes[1].legend()
    ok = mean_t < 0.95 * cam.adc_max_dn
    axes[2].plot(mean_t[ok] - dark[ok], var_t[ok], ".", ms=2, alpha=0.4, label="per-pixel, 100 frames")
    laser = (cfg.laser.power_fluctuation_rel * (mu - dark.mean())) ** 2  # common-mode term
    axes[2].plot(mu - dark.mean(), emva + laser, "r", label="EMVA 1288 + laser")
    axes[2].set_xlabel("mean - dark (DN)")
    axes[2].set_ylabel("temporal variance (DN^2)")
    axes[2].set_title("photon transfer")
    axes[2].legend()
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "physics_demo.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"  photo-electrons per pixel (first pattern): mean {photo_e.mean():.0f} e-")
    print(f"wrote {path}")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("demo_output"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    run(args.out, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
