"""Camera: the EMVA 1288 linear model, turning speckle intensities into digital frames.

Per pixel i of frame f (docs/physics.md gives sources and the noise budget)::

    mu_e   = QE * photons_i * (1 + PRNU_i) * laser_f + I_dark * t_exp      (mean electrons)
    n_e    ~ Poisson(mu_e)            (exact below ``poisson_exact_below_e``, by inversion;
                                       N(mu_e, mu_e) above: skewness 1/sqrt(mu) <= 22 % at 20 e-)
    n_e    = min(n_e, full_well_e)
    y      = round(K * (n_e + DSNU_i + sigma_read * z) + black_level)   clipped to [0, 2^bits - 1]

Rounding alone supplies the quantization noise (1/12 DN^2); no extra uniform noise is added (the
double counting of emva1288#185). PRNU and DSNU are fixed per absolute sensor pixel (seeded), so a
different ROI sees the same pixels.

Randomness is counter-based: the noise of pixel i in frame f is the Threefry-2x32 hash of the
counter (f, pixel id) under the device's noise key, and the laser factor of frame f the hash of
(f, 2^32 - 1) under the laser key. A frame is therefore the same whether it is acquired alone, in
a batch or in chunks, on any number of threads. The whole pipeline is one fused, jit-compiled
kernel, run on chunks of about a million values so that its working set stays in cache.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.extend.random as jxr
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtri

from .config import CameraConfig
from .medium import _unit_phasor, complex_gaussian
from .rng import Stream, threefry_key

#: Absolute pixel ids are row * SENSOR_STRIDE + col, whatever the configured sensor size.
SENSOR_STRIDE = 2048


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


#: frames per kernel call: about 2^20 values, a power of two (few compiled shapes per ROI)
CHUNK_VALUES = 1 << 20
_LASER_COUNTER = 0xFFFFFFFF


def poisson_iterations(threshold_e: float) -> int:
    """Inversion steps that cover Poisson(lambda <= threshold) beyond a 1e-9 tail."""
    return math.ceil(threshold_e + 7.0 * math.sqrt(threshold_e) + 8.0)


class Camera:
    """The detector of one device.

    Parameters
    ----------
    config:
        Camera settings.
    seed:
        Device seed (keys the fixed patterns and the per-frame noise).

    Attributes
    ----------
    prnu:
        (m,) float64, the per-pixel gain factor 1 + PRNU_i (>= 0).
    dsnu_e:
        (m,) float64, the per-pixel dark offset DSNU_i in electrons.
    """

    def __init__(self, config: CameraConfig, seed: int) -> None:
        self.config = config
        self.seed = int(seed)
        ids = roi_pixel_ids(config)
        self.prnu = np.maximum(1.0 + config.prnu_rel * standard_normal_map(seed, Stream.PRNU, ids), 0.0)
        self.dsnu_e = config.dsnu_e * standard_normal_map(seed, Stream.DSNU, ids)
        self._pixel_ids = jnp.asarray(ids)
        self._qe_prnu = jnp.asarray(config.quantum_efficiency * self.prnu, dtype=jnp.float32)
        self._dsnu = jnp.asarray(self.dsnu_e, dtype=jnp.float32)
        self._noise_key = threefry_key(self.seed, Stream.SHOT_READ)
        self._laser_key = threefry_key(self.seed, Stream.LASER)

    @property
    def n_pixels(self) -> int:
        return self.config.n_outputs

    def expose(
        self,
        intensity: np.ndarray | jnp.ndarray,
        photons_per_unit: float,
        frame_indices: np.ndarray,
        laser_rel: float = 0.0,
    ) -> np.ndarray:
        """Digital frames (b, m) for speckle ``intensity`` (b, m) float32 at nominal laser power.

        Mean photons per pixel are ``photons_per_unit * intensity`` times the frame's laser factor
        ``max(0, 1 + laser_rel * z_f)``. ``frame_indices`` (b,) are the device's global frame
        numbers (modulo 2^32: the noise of a frame repeats after 4.3e9 frames, 24 days at 2 kHz).
        Returns uint8 (8-bit), uint16 (10, 12-bit) or float32 (ideal detector).
        """
        c = self.config
        intensity = jnp.asarray(intensity, dtype=jnp.float32)
        b, m = intensity.shape
        frames = jnp.asarray(np.asarray(frame_indices, dtype=np.int64) & 0xFFFFFFFF, dtype=jnp.uint32)
        noisy = c.shot_noise or c.read_noise_e > 0
        threshold = float(c.poisson_exact_below_e) if c.shot_noise else 0.0
        params = jnp.asarray(
            [
                c.dark_current_e_per_s * c.exposure_us * 1e-6,
                c.read_noise_e,
                min(c.full_well_e, 3e38),
                c.system_gain_dn_per_e,
                c.black_level_dn,
                threshold,
                laser_rel,
                0.0 if c.bit_depth is None else c.adc_max_dn,
            ],
            dtype=jnp.float32,
        )
        gain_map = self._qe_prnu * jnp.float32(photons_per_unit)
        statics = {
            "shot": bool(c.shot_noise),
            "noisy": bool(noisy),
            "laser": laser_rel > 0,
            "n_iter": poisson_iterations(threshold) if c.shot_noise and threshold > 0 else 0,
            "bits": c.bit_depth,
        }
        chunk = max(1, 1 << math.floor(math.log2(max(1, CHUNK_VALUES // m))))
        out = np.empty((b, m), dtype=np.dtype(c.output_dtype))
        for lo in range(0, b, chunk):
            hi = min(lo + chunk, b)
            rows = hi - lo
            # pad a short last chunk to a power of two: a handful of compiled shapes serve all calls
            size = rows if rows == chunk else 1 << math.ceil(math.log2(rows))
            inten, fr = intensity[lo:hi], frames[lo:hi]
            if size != rows:
                inten = jnp.pad(inten, ((0, size - rows), (0, 0)))
                fr = jnp.pad(fr, (0, size - rows))
            res = _expose_kernel(
                inten,
                fr,
                self._pixel_ids,
                self._noise_key,
                self._laser_key,
                gain_map,
                self._dsnu,
                params,
                **statics,
            )
            out[lo:hi] = np.asarray(res)[:rows]
        return out


def _normal_pair(bits0: jnp.ndarray, bits1: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Two independent N(0, 1) from two uint32 words (Box-Muller, 24-bit uniforms)."""
    u1 = ((bits0 >> 8).astype(jnp.float32) + 1.0) * (1.0 / 16777216.0)
    radius = jnp.sqrt(-2.0 * jnp.log(u1))
    cos, sin = _unit_phasor(bits1)
    return radius * cos, radius * sin


@partial(jax.jit, static_argnames=("shot", "noisy", "laser", "n_iter", "bits"))
def _expose_kernel(
    intensity,
    frames,
    pixel_ids,
    noise_key,
    laser_key,
    gain_map,
    dsnu,
    params,
    shot: bool,
    noisy: bool,
    laser: bool,
    n_iter: int,
    bits: int | None,
):
    """One chunk of frames: intensity (b, m) -> DN (b, m). See the module docstring."""
    dark_e, read_e, full_well, gain, black, threshold, laser_rel, adc_max = (params[i] for i in range(8))
    b, m = intensity.shape
    mu = intensity * gain_map[None, :]
    if laser:
        lw = jxr.threefry_2x32(laser_key, jnp.stack([frames, jnp.full_like(frames, _LASER_COUNTER)]))
        z_laser, _ = _normal_pair(lw[0], lw[1])
        mu = mu * jnp.maximum(1.0 + laser_rel * z_laser, 0.0)[:, None]
    mu = mu + dark_e
    if noisy:
        shape = (b, m)
        w = jxr.threefry_2x32(
            noise_key,
            jnp.stack(
                [jnp.broadcast_to(frames[:, None], shape), jnp.broadcast_to(pixel_ids[None, :], shape)]
            ),
        )
        z_shot, z_read = _normal_pair(w[0], w[1])
        if shot:
            collected = mu + jnp.sqrt(mu) * z_shot
            if n_iter:
                # exact Poisson below the threshold, by inversion of a uniform from the first word;
                # those pixels take their read noise from the second word alone (independent of it)
                u = ((w[0] >> 8).astype(jnp.float32) + 0.5) * (1.0 / 16777216.0)
                lam = jnp.minimum(mu, threshold)
                p = jnp.exp(-lam)
                cdf = p
                k = jnp.zeros_like(lam)
                for i in range(1, n_iter + 1):
                    k = k + (u > cdf)
                    p = p * lam * (1.0 / i)
                    cdf = cdf + p
                # float32 round-off can leave the cdf just below u in the far tail (p < 1e-7):
                # cap those draws at a tail quantile instead of the loop length
                k = jnp.minimum(k, jnp.ceil(lam + 6.0 * jnp.sqrt(lam) + 3.0))
                low = mu < threshold
                collected = jnp.where(low, k, collected)
                z_read = jnp.where(
                    low, ndtri(((w[1] >> 8).astype(jnp.float32) + 0.5) * (1.0 / 16777216.0)), z_read
                )
        else:
            collected = mu
        electrons = jnp.minimum(collected, full_well) + read_e * z_read
    else:
        electrons = jnp.minimum(mu, full_well)
    signal = gain * (electrons + dsnu[None, :]) + black
    if bits is None:
        return signal
    signal = jnp.clip(jnp.rint(signal), 0.0, adc_max)
    return signal.astype(jnp.uint8 if bits <= 8 else jnp.uint16)
