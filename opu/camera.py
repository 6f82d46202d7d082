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
counter (f, pixel id) under the device's noise key (shot and read normals), the exact-Poisson
uniform the hash of (f, pixel id + 2^31), and the laser factor of frame f the hash of
(f, 2^32 - 1) under the laser key. A frame is therefore the same whether it is acquired alone, in
a batch or in chunks, on any number of threads.

Two jit-compiled kernels run on chunks of about a million values (so that the working set stays in
cache): :func:`_expose_kernel` takes every pixel through the Gaussian path in one fused pass and
flags the dim ones (mean below the exact-Poisson threshold); :func:`_expose_exact_kernel` redraws
only those, gathered by index, so the long inversion loop is paid by the few pixels that need it.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .config import CameraConfig
from .medium import _unit_phasor, complex_gaussian
from .rng import Stream, threefry2x32, threefry_key

#: Absolute pixel ids are row * SENSOR_STRIDE + col, whatever the configured sensor size.
SENSOR_STRIDE = 2048


def roi_pixel_ids(camera: CameraConfig, halo_px: int = 0) -> np.ndarray:
    """Absolute ids of the ROI pixels (row-major), optionally grown by ``halo_px`` on each side.

    On the sensor: ``row * SENSOR_STRIDE + col``; a halo pixel off the sensor:
    ``(row + 40000) * 4096 + (col + 1024)``, a range disjoint from every on-sensor id."""
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
    re, _ = complex_gaussian(threefry_key(seed, stream), pixel_ids, np.zeros(1, np.uint32))
    return np.asarray(re[:, 0], dtype=np.float64) * math.sqrt(2.0)


#: frames per kernel call: about 2^20 values, a power of two (few compiled shapes per ROI)
CHUNK_VALUES = 1 << 20
#: dim pixels per exact-Poisson kernel call (smaller sets are padded to one of EXACT_SIZES)
EXACT_CHUNK = 1 << 16
#: smallest camera-kernel call, values (shorter batches are padded up to it)
MIN_CALL_VALUES = 1 << 16
_LASER_COUNTER = 0xFFFFFFFF
#: set in the pixel counter of the exact-Poisson uniform (pixel ids, halo included, are < 2^31)
_EXACT_SHOT_BIT = 0x80000000


def poisson_iterations(threshold_e: float) -> int:
    """Inversion steps that cover Poisson(lambda <= threshold) to the last 24-bit uniform.

    ``ceil(T + 6 sqrt(T) + 3)`` is at or above the Poisson quantile at 1 - 2^-25 (the largest
    uniform the kernel draws) for every lambda <= T (checked numerically in the tests); the
    draw is also capped at that quantile bound, so further steps could not change it.
    """
    return math.ceil(_poisson_cap(threshold_e))


def _poisson_cap(lam):
    """Upper bound of an exact Poisson(lam) draw from a 24-bit uniform (float or array)."""
    return lam + 6.0 * (jnp.sqrt(lam) if isinstance(lam, jax.Array) else math.sqrt(lam)) + 3.0


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
        self._pixel_ids_np = ids
        self._dsnu_np = self.dsnu_e.astype(np.float32)
        # device_put, not jnp.asarray: the latter compiles a staging program for each new shape
        self._pixel_ids = jax.device_put(ids)
        self._qe_prnu_np = (config.quantum_efficiency * self.prnu).astype(np.float32)
        self._qe_prnu = jax.device_put(self._qe_prnu_np)
        self._dsnu = jax.device_put(self._dsnu_np)
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
        if not isinstance(intensity, jax.Array) or intensity.dtype != jnp.float32:
            # numpy stays numpy: jit arguments take it as is, while an eager jnp conversion
            # would compile a staging program for every new shape
            intensity = np.asarray(intensity, dtype=np.float32)
        b, m = intensity.shape
        # host-side numpy inputs: each eager JAX op here would cost ~0.1 ms per call
        frames = (np.asarray(frame_indices, dtype=np.int64) & 0xFFFFFFFF).astype(np.uint32)
        noisy = c.shot_noise or c.read_noise_e > 0
        exact = bool(c.shot_noise and c.poisson_exact_below_e > 0)
        params = np.asarray(
            [
                c.dark_current_e_per_s * c.exposure_us * 1e-6,
                c.read_noise_e,
                min(c.full_well_e, 3e38),
                c.system_gain_dn_per_e,
                c.black_level_dn,
                c.poisson_exact_below_e if exact else 0.0,
                laser_rel,
                0.0 if c.bit_depth is None else c.adc_max_dn,
                photons_per_unit,
            ],
            dtype=np.float32,
        )
        statics = {"laser": laser_rel > 0, "bits": c.bit_depth}
        n_iter = poisson_iterations(c.poisson_exact_below_e) if exact else 0
        fixed = (self._pixel_ids, self._noise_key, self._laser_key, self._qe_prnu, self._dsnu, params)
        chunk = max(1, 1 << math.floor(math.log2(max(1, CHUNK_VALUES // m))))
        out = np.empty((b, m), dtype=np.dtype(c.output_dtype))
        # several chunks or a padded one: slice a host view (zero-copy on CPU) instead of eager
        # device slices and pads, each compiled once per shape
        host_inten = np.asarray(intensity) if (b > chunk or _row_bucket(b, m, chunk) != b) else intensity
        for lo in range(0, b, chunk):
            hi = min(lo + chunk, b)
            rows = hi - lo
            # pad a short chunk to a bucket size: a handful of compiled shapes serve all calls
            size = _row_bucket(rows, m, chunk)
            fr = np.zeros(size, dtype=np.uint32)
            fr[:rows] = frames[lo:hi]
            if size == rows:
                inten = host_inten if rows == b else host_inten[lo:hi]
            else:
                inten = np.zeros((size, m), dtype=np.float32)
                inten[:rows] = host_inten[lo:hi]
            dn, dim, laser_f = _expose_kernel(
                inten, fr, *fixed, shot=bool(c.shot_noise), noisy=bool(noisy), exact=exact, **statics
            )
            block = out[lo:hi]
            block[...] = np.asarray(dn)[:rows]
            if exact:
                # the dim pixels (mean below the threshold) get their exact Poisson draw
                self._redraw_dim(block, np.asarray(dim)[:rows], np.asarray(inten)[:rows], fr,
                                 np.asarray(laser_f), params, n_iter, statics)
        return out

    def _redraw_dim(self, block, dim, inten, frames, laser_f, params, n_iter: int, statics: dict) -> None:
        """Overwrite the pixels of ``block`` (rows, m) flagged in ``dim`` (rows, m) bool (mean below
        the exact-Poisson threshold) with their exact draw (in place). ``inten`` (rows, m) is the
        chunk's intensity, ``laser_f`` (>= rows,) its frames' laser factors."""
        idx = np.flatnonzero(dim)  # the one pass over the chunk; the rest costs O(dim pixels)
        k = idx.size
        if k == 0:
            return
        # gathered on the host into flat arrays: the exact kernel's shapes do not depend on the
        # chunk shape, so three compilations (one per bucket size) serve every ROI and batch
        pieces = _exact_pieces(k)
        total = pieces[-1][0] + pieces[-1][1]
        row, col = np.divmod(idx, dim.shape[1])
        data = []
        for src, at in ((inten.reshape(-1), idx), (self._qe_prnu_np, col), (laser_f, row), (frames, row),
                        (self._pixel_ids_np, col), (self._dsnu_np, col)):
            padded = np.zeros(total, dtype=src.dtype)
            np.take(src, at, out=padded[:k])  # straight into the padded array
            data.append(padded)
        res = np.empty(total, dtype=block.dtype)
        for start, size in pieces:
            part = slice(start, start + size)
            res[part] = _expose_exact_kernel(*(d[part] for d in data), self._noise_key, params,
                                             n_iter=n_iter, **statics)
        np.put(block.reshape(-1), idx, res[:k])


def _half_octaves(lo: int, hi: int) -> tuple[int, ...]:
    """``lo * 2^k`` and ``lo * 3 * 2^(k-1)`` (where whole) from ``lo`` up to ``hi``, then ``hi``.

    Padding to the next of these costs at most 1.5x the values (x4 steps cost up to 4x: a DFA step's
    72 frames were padded to 256); twice as many compiled shapes, each compiled once per process."""
    sizes = {hi}
    size = lo
    while size < hi:
        sizes.add(size)
        if (3 * size) % 2 == 0 and 3 * size // 2 < hi:
            sizes.add(3 * size // 2)
        size *= 2
    return tuple(sorted(sizes))


def _row_bucket(rows: int, m: int, chunk: int) -> int:
    """Rows a chunk of ``rows`` frames of m pixels is padded to: ``chunk`` itself, or the smallest of
    :func:`_half_octaves` from r0 >= rows, r0 the power of two giving at least 2^16 values (capped
    at ``chunk``).

    Few shapes (each compilation of the camera kernel costs 0.05-1 s) for little padding (at most
    1.5x above r0 rows; a 2^16-value call costs ~0.1 ms)."""
    if rows >= chunk:
        return chunk
    r0 = min(chunk, 1 << max(0, math.ceil(math.log2(max(1, MIN_CALL_VALUES // m)))))
    return next(s for s in _half_octaves(r0, chunk) if s >= rows)


#: sizes of the exact-kernel calls: the largest one for the bulk, the smaller ones (within 1.5x of
#: each other) for the rest
EXACT_SIZES = _half_octaves(1 << 12, EXACT_CHUNK)


def _exact_pieces(n: int) -> list[tuple[int, int]]:
    """(start, padded size) of the exact-kernel calls that cover n values."""
    pieces, start = [], 0
    while n - start >= EXACT_CHUNK:
        pieces.append((start, EXACT_CHUNK))
        start += EXACT_CHUNK
    if start < n:
        pieces.append((start, next(s for s in EXACT_SIZES if s >= n - start)))
    return pieces


def _uniform24(bits: jnp.ndarray, offset: float) -> jnp.ndarray:
    """(top 24 bits of ``bits`` + offset) / 2^24 as float32.

    Converted through int32 (exact below 2^24): a uint32 -> float32 conversion has no instruction
    before AVX-512 and costs a multi-instruction sequence per vector on AVX2; the value is the same.
    """
    return ((bits >> 8).astype(jnp.int32).astype(jnp.float32) + offset) * (1.0 / 16777216.0)


def _normal_pair(bits0: jnp.ndarray, bits1: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Two independent N(0, 1) from two uint32 words (Box-Muller, 24-bit uniforms)."""
    u1 = _uniform24(bits0, 1.0)
    radius = jnp.sqrt(-2.0 * jnp.log(u1))
    cos, sin = _unit_phasor(bits1)
    return radius * cos, radius * sin


def _laser_factor(frames, laser_key, laser_rel):
    """max(0, 1 + laser_rel z_f) per frame (b,): z_f from the counter (frame, 2^32 - 1)."""
    lw = threefry2x32(laser_key, frames, jnp.full_like(frames, _LASER_COUNTER))
    z_laser, _ = _normal_pair(lw[0], lw[1])
    return jnp.maximum(1.0 + laser_rel * z_laser, 0.0)


def _digitize(electrons, dsnu, params, bits: int | None):
    """Electrons (after full well and read noise) -> DN: gain, offsets, rounding, ADC range."""
    gain, black, adc_max = params[3], params[4], params[7]
    signal = gain * (electrons + dsnu) + black
    if bits is None:
        return signal
    signal = jnp.clip(jnp.rint(signal), 0.0, adc_max)
    # through int32: float -> uint8/16 has no direct vector instruction on AVX2 (same value)
    return signal.astype(jnp.int32).astype(jnp.uint8 if bits <= 8 else jnp.uint16)


@partial(jax.jit, static_argnames=("shot", "noisy", "laser", "exact", "bits"))
def _expose_kernel(
    intensity,
    frames,
    pixel_ids,
    noise_key,
    laser_key,
    gain_map,
    dsnu,
    params,
    *,
    shot: bool,
    noisy: bool,
    laser: bool,
    exact: bool,
    bits: int | None,
):
    """One chunk of frames: intensity (b, m) -> (DN (b, m), dim (b, m) bool, laser factor (b,)).

    Shot noise is the Gaussian N(mu, mu) here; with ``exact`` the pixels flagged ``dim`` (mu below
    the threshold) are redrawn by :func:`_expose_exact_kernel` (otherwise ``dim`` is a (1, 1)
    placeholder); the laser factors are returned for it (ones without laser fluctuation).
    """
    read_e, full_well, threshold = params[1], params[2], params[5]
    b, m = intensity.shape
    mu = intensity * (gain_map * params[8])[None, :]
    if laser:
        # one value per frame, behind a barrier: fused into the pixel loop, its hash and normal
        # would be recomputed for every pixel (twice the kernel's cost)
        laser_f = _laser_factor(frames, laser_key, params[6])
        mu = mu * laser_f[:, None]
    else:
        laser_f = jnp.ones((b,), jnp.float32)
    mu = mu + params[0]
    if noisy:
        shape = (b, m)
        w = threefry2x32(
            noise_key, jnp.broadcast_to(frames[:, None], shape), jnp.broadcast_to(pixel_ids[None, :], shape)
        )
        z_shot, z_read = _normal_pair(w[0], w[1])
        collected = mu + jnp.sqrt(mu) * z_shot if shot else mu
        electrons = jnp.minimum(collected, full_well) + read_e * z_read
    else:
        electrons = jnp.minimum(mu, full_well)
    dim = mu < threshold if exact else jnp.zeros((1, 1), dtype=bool)
    return _digitize(electrons, dsnu[None, :], params, bits), dim, laser_f


@partial(jax.jit, static_argnames=("laser", "n_iter", "bits"))
def _expose_exact_kernel(
    inten, gain, laser_f, frames, pixel_ids, dsnu, noise_key, params, *, laser: bool, n_iter: int,
    bits: int | None
):
    """DN (k,) of k pixels drawing shot noise exactly; all inputs (k,) flat, gathered on the host.

    ``inten``, ``gain`` (QE x (1 + PRNU)), ``laser_f``: each value's intensity, gain and frame laser
    factor, combined into the mean electrons by the same float32 operations as
    :func:`_expose_kernel`; ``frames`` / ``pixel_ids``: each value's counters, ``dsnu``: its dark
    offset. Poisson by inversion of a uniform from the pixel's exact-shot counter ``(frame, pixel
    id + 2^31)``; the read noise is the same draw as on the Gaussian path (second normal of the
    ``(frame, pixel id)`` pair), so it stays independent of the shot noise. Same counters, so a
    frame is still the same in any chunking.
    """
    mu = inten * (gain * params[8])
    if laser:
        mu = mu * laser_f
    mu = mu + params[0]
    read_e, full_well, threshold = params[1], params[2], params[5]
    w = threefry2x32(noise_key, frames, pixel_ids)
    _, z_read = _normal_pair(w[0], w[1])
    u_word, _ = threefry2x32(noise_key, frames, pixel_ids | np.uint32(_EXACT_SHOT_BIT))
    u = _uniform24(u_word, 0.5)
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
    k = jnp.minimum(k, jnp.ceil(_poisson_cap(lam)))
    electrons = jnp.minimum(k, full_well) + read_e * z_read
    return _digitize(electrons, dsnu, params, bits)
