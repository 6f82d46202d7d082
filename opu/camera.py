"""Camera: the EMVA 1288 linear model, turning mean photon counts into digital frames.

Per pixel i of frame f (docs/physics.md gives sources and the noise budget)::

    mu_e   = QE * photons_i * (1 + PRNU_i) + I_dark * t_exp          (mean electrons)
    n_e    ~ Poisson(mu_e)                     (exact below ``poisson_exact_below_e``,
                                                N(mu_e, mu_e) above: skewness 1/sqrt(mu) <= 10 %)
    n_e    = min(n_e, full_well_e)
    y      = round(K * (n_e + DSNU_i + sigma_read * z) + black_level)   clipped to [0, 2^bits - 1]

Rounding alone supplies the quantization noise (1/12 DN^2); no extra uniform noise is added (the
double counting of emva1288#185). PRNU and DSNU are fixed per absolute sensor pixel (seeded), so a
different ROI sees the same pixels. Random numbers of frame f come from the frame's own Philox
stream (see :mod:`opu.rng`).

Above ``poisson_exact_below_e`` the Gaussian shot and read noises are drawn as one normal of
variance ``mu_e + sigma_read^2`` and full-well clipping applies to their sum; the read noise of a
pixel sitting exactly at full well (<= sigma_read / full_well, 0.02 % in the realistic preset) is
the only thing this merges.
"""

from __future__ import annotations

import itertools
import math
import os
from concurrent.futures import ThreadPoolExecutor
from functools import cache

import jax.numpy as jnp
import numpy as np

from .config import CameraConfig
from .medium import complex_gaussian
from .rng import Stream, frame_generator, threefry_key

#: Absolute pixel ids are row * SENSOR_STRIDE + col, whatever the configured sensor size.
SENSOR_STRIDE = 2048
#: Batches with at least this many output values are exposed on several threads.
PARALLEL_MIN_VALUES = 1 << 19


def _workers(n_values: int) -> int:
    return min(os.cpu_count() or 1, 8) if n_values >= PARALLEL_MIN_VALUES else 1


@cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=min(os.cpu_count() or 1, 8), thread_name_prefix="opu-camera")


def roi_pixel_ids(camera: CameraConfig, halo_px: int = 0) -> np.ndarray:
    """Absolute ids of the ROI pixels (row-major), optionally grown by ``halo_px`` on each side."""
    r = camera.roi
    rows = np.arange(r.row - halo_px, r.row + r.height_px + halo_px)
    cols = np.arange(r.col - halo_px, r.col + r.width_px + halo_px)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    ids = rr * SENSOR_STRIDE + cc
    # Halo pixels off the sensor get ids in a disjoint range above every on-sensor id.
    off = (rr < 0) | (cc < 0) | (rr >= camera.sensor_height_px) | (cc >= camera.sensor_width_px)
    ids = np.where(off, (rr + 40_000) * 4096 + (cc + 1024), ids)
    return ids.ravel().astype(np.uint32)


def standard_normal_map(seed: int, stream: Stream, pixel_ids: np.ndarray) -> np.ndarray:
    """N(0, 1) per pixel id, float64 (m,): fixed-pattern noise keyed by the absolute pixel."""
    re, _ = complex_gaussian(threefry_key(seed, stream), jnp.asarray(pixel_ids), jnp.zeros((1,), jnp.uint32))
    return np.asarray(re[:, 0], dtype=np.float64) * math.sqrt(2.0)


class Camera:
    """The detector of one device.

    Parameters
    ----------
    config:
        Camera settings.
    seed:
        Device seed (keys the fixed patterns and the per-frame noise).
    """

    def __init__(self, config: CameraConfig, seed: int) -> None:
        self.config = config
        self.seed = int(seed)
        ids = roi_pixel_ids(config)
        self.prnu = np.maximum(1.0 + config.prnu_rel * standard_normal_map(seed, Stream.PRNU, ids), 0.0)
        self.dsnu_e = config.dsnu_e * standard_normal_map(seed, Stream.DSNU, ids)
        self._qe_prnu = (config.quantum_efficiency * self.prnu).astype(np.float32)
        self._dsnu_e32 = self.dsnu_e.astype(np.float32)

    @property
    def n_pixels(self) -> int:
        return self.config.n_outputs

    def mean_electrons(self, photons: np.ndarray) -> np.ndarray:
        """Expected electrons (b, m) float64 for mean photon counts ``photons`` (b, m)."""
        c = self.config
        dark = c.dark_current_e_per_s * c.exposure_us * 1e-6
        return c.quantum_efficiency * photons * self.prnu + dark

    def expose(
        self,
        intensity: np.ndarray,
        photons_per_unit: float,
        frame_indices: np.ndarray,
        laser_rel: float = 0.0,
    ) -> np.ndarray:
        """Digital frames (b, m) for speckle ``intensity`` (b, m) float32 at nominal laser power.

        Mean photons per pixel are ``photons_per_unit * intensity`` (times the laser factor).
        ``frame_indices`` (b,) are the device's global frame numbers: frame f's random numbers
        (its laser power factor ``max(0, 1 + laser_rel * z0)``, then one normal per pixel, then
        the exact Poisson draws) all come from the frame's own stream. Returns uint8 (8-bit),
        uint16 (10, 12-bit) or float32 (ideal detector).
        """
        b, m = np.shape(intensity)
        workers = _workers(b * m)
        if workers > 1:
            # Frames are independent (each has its own random stream), so splitting the batch
            # across threads changes nothing in the result; numpy releases the GIL in the
            # random draws and the elementwise passes.
            bounds = np.linspace(0, b, workers + 1).astype(int)
            out = np.empty((b, m), dtype=self.config.output_dtype)
            futures = [
                _pool().submit(
                    self._expose_rows, intensity[lo:hi], photons_per_unit, frame_indices[lo:hi], laser_rel
                )
                for lo, hi in itertools.pairwise(bounds)
            ]
            for (lo, hi), fut in zip(itertools.pairwise(bounds), futures, strict=True):
                out[lo:hi] = fut.result()
            return out
        return self._expose_rows(intensity, photons_per_unit, frame_indices, laser_rel)

    def _expose_rows(
        self, intensity: np.ndarray, photons_per_unit: float, frame_indices: np.ndarray, laser_rel: float
    ) -> np.ndarray:
        c = self.config
        noisy = c.shot_noise or c.read_noise_e > 0
        gens = (
            [frame_generator(self.seed, Stream.SHOT_READ, int(f)) for f in frame_indices]
            if (noisy or laser_rel > 0)
            else []
        )
        if laser_rel > 0:
            z0 = np.array([g.standard_normal() for g in gens], dtype=np.float32)
            factor = np.maximum(1.0 + laser_rel * z0, 0.0).astype(np.float32)
        else:
            factor = None
        # mean electrons, in place: QE * PRNU * photons * laser + dark
        mu = np.multiply(
            np.asarray(intensity, dtype=np.float32),
            (np.float32(photons_per_unit) * self._qe_prnu)[None, :],
        )
        if factor is not None:
            mu *= factor[:, None]
        mu += np.float32(c.dark_current_e_per_s * c.exposure_us * 1e-6)
        if noisy:
            electrons = self._noisy_electrons(mu, gens)
        else:
            electrons = np.minimum(mu, np.float32(c.full_well_e), out=mu)
        electrons += self._dsnu_e32[None, :]
        electrons *= np.float32(c.system_gain_dn_per_e)
        electrons += np.float32(c.black_level_dn)
        if c.bit_depth is None:
            return electrons
        np.rint(electrons, out=electrons)
        np.clip(electrons, 0.0, c.adc_max_dn, out=electrons)
        return electrons.astype(np.uint8 if c.bit_depth <= 8 else np.uint16)

    def _noisy_electrons(self, mu: np.ndarray, gens: list[np.random.Generator]) -> np.ndarray:
        c = self.config
        b, m = mu.shape
        z = np.empty((b, m), dtype=np.float32)
        for f, g in enumerate(gens):
            g.standard_normal(out=z[f], dtype=np.float32)
        read = np.float32(c.read_noise_e)
        full = np.float32(c.full_well_e)
        if not c.shot_noise:
            out = np.minimum(mu, full)
            out += read * z
            return out
        low = mu < c.poisson_exact_below_e
        out = mu + read * read
        np.sqrt(out, out=out)
        out *= z
        out += mu
        np.minimum(out, full, out=out)
        rows, cols = np.nonzero(low)  # row-major: grouped by frame
        if rows.size:
            lam = mu[rows, cols]
            counts = np.empty(rows.size, dtype=np.float32)
            bounds = np.searchsorted(rows, np.arange(len(gens) + 1))
            # the Poisson draws follow the frame's normals in its own stream
            for f in np.flatnonzero(np.diff(bounds)):
                lo, hi = bounds[f], bounds[f + 1]
                counts[lo:hi] = gens[f].poisson(lam[lo:hi])
            np.minimum(counts, full, out=counts)
            # read noise of these pixels: their own normal z, independent of the Poisson draw
            out[rows, cols] = counts + read * z[rows, cols]
        return out
