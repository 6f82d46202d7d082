"""The optical layer in the forward path, and its pluggable backward surrogates.

Forward (host, outside ``jit``): for activations h (b, n) float

    p = 1[h > mean_j h_j]                       (b, n) bool: the DMD pattern of sign(h - mean)
    F = device.transform(p)                     (b, m) uint8/16 camera frames (the true |B p|^2 + noise)
    y = F / adc_max - mean_i (F / adc_max)      (b, m) float32, per-sample mean removed

Every frame comes from :class:`drivers.Device` (simulator, emulator over VISA or hardware). Batches
are acquired in chunks of fixed sizes (:data:`CHUNKS`, the last one padded with dark patterns whose
frames are dropped) so that a simulated device does not recompile for each batch size.

Backward (JAX): the value of the layer inside a jitted model is the measured ``y`` (an input of the
jitted function); its gradient is that of a differentiable surrogate ``s(h)`` through
``y + s(h) - stop_gradient(s(h))``. With P = I - 11^T/n (centring of h), Q = I - 11^T/m (centring of
the outputs), b = (sign(P h) + 1) / 2 the pattern and ``ste`` meaning the sign's derivative is taken
as the identity (straight-through), the surrogates are:

* ``random`` (the defender's, used for training and shipped with the model): a fixed linear map,
  ``s(h) = Q W P h``, W (m, n) real i.i.d. N(0, 1/n) from the defender's seed; Jacobian ``Q W P``
  (constant: the DFA-style "backward weight" of Cappelli et al. 2021).
* ``bpda`` (Athalye et al. 2018, backward-pass differentiable approximation): the forward's structure
  with the sign straight-through and the unknown medium replaced by the same random W,
  ``s(h) = Q (W b_ste)^2``; Jacobian ``Q diag(W b) W P`` (the factor 2 of the square and the 1/2 of
  the pattern cancel).
* ``tm`` (phase-retrieval attack): the matrix B^ recovered by ``opu tm-retrieve`` (sqrt(DN) units),
  ``s(h) = Q |B^ b_ste|^2 / adc_max``; Jacobian ``Q Re(diag(conj(B^ b)) B^) P / adc_max``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

import opu
from drivers.base import Device
from host.train.exposure import auto_expose

SURROGATES = ("random", "bpda", "tm")
#: batch sizes the layer acquires in (the last chunk is padded up to the smallest that holds it)
CHUNKS = (16, 256)


class OpticalLayerError(ValueError):
    """The optical layer cannot be set up or used as asked (the message says what is allowed)."""


def patterns(h: np.ndarray) -> np.ndarray:
    """DMD patterns (b, n) bool of activations h (b, n): ``h > mean(h)`` per sample (sign(h - mean))."""
    h = np.asarray(h)
    return h > h.mean(axis=-1, keepdims=True)


def normalize(frames: np.ndarray, adc_max_dn: float) -> np.ndarray:
    """(b, m) float32: frames / adc_max with each sample's mean over the m outputs removed."""
    y = np.asarray(frames, dtype=np.float64) / float(adc_max_dn)
    return (y - y.mean(axis=-1, keepdims=True)).astype(np.float32)


@dataclass
class OpticalLayer:
    """An open device configured as an n -> m optical layer (see the module docstring).

    Build it with :meth:`attach`. ``settings`` is the device settings dump in use (store it to
    rebuild the same layer later: same features, pixels and exposure).
    """

    device: Device
    n_in: int
    n_out: int
    settings: dict
    frames: int = 0

    @classmethod
    def attach(
        cls,
        device: Device,
        n_in: int,
        n_out: int,
        settings: dict | None = None,
        exposure_target_frac: float = 0.6,
    ) -> OpticalLayer:
        """Configure ``device`` for ``n_in`` features and a centred ``n_out``-pixel camera ROI.

        Without ``settings`` the exposure and macro-pixels come from auto-exposure (all-on frames'
        99.9th percentile at ``exposure_target_frac`` of the ADC range); with ``settings`` (a
        previous layer's) they are applied as they are and nothing is acquired.
        """
        if int(n_in) < 2 or int(n_out) < 1:
            raise OpticalLayerError(
                f"an optical layer needs n_in >= 2 features and n_out >= 1 pixels, got {n_in}, {n_out}"
            )
        if settings is not None:
            if settings.get("n_features") != n_in or _roi_pixels(settings) != n_out:
                raise OpticalLayerError(
                    f"stored settings are for {settings.get('n_features')} features and "
                    f"{_roi_pixels(settings)} pixels, the layer needs {n_in} and {n_out}"
                )
            device.configure(**settings)
        else:
            try:
                roi = opu.centred_roi(int(n_out))
            except opu.CapacityError as err:
                raise OpticalLayerError(f"n_out={n_out} pixels: {err}") from err
            device.configure(
                n_features=int(n_in),
                camera_roi={
                    "row": roi.row,
                    "col": roi.col,
                    "height_px": roi.height_px,
                    "width_px": roi.width_px,
                },
            )
            auto_expose(device, target_frac=exposure_target_frac)
        return cls(device, int(n_in), int(n_out), device.settings.model_dump(mode="json"))

    @property
    def adc_max_dn(self) -> float:
        return float(self.device.settings.adc_max_dn)

    def restore(self) -> None:
        """Put the device back to this layer's settings (after e.g. a TM retrieval changed them)."""
        if self.device.settings.model_dump(mode="json") != self.settings:
            self.device.configure(**self.settings)

    def acquire(self, p: np.ndarray) -> np.ndarray:
        """Frames (b, m) of patterns p (b, n) bool, acquired in chunks of :data:`CHUNKS` sizes."""
        p = np.asarray(p, dtype=bool)
        if p.ndim != 2 or p.shape[1] != self.n_in:
            raise OpticalLayerError(f"the optical layer takes (batch, {self.n_in}) inputs, got {p.shape}")
        self.restore()
        b = p.shape[0]
        out = np.empty((b, self.n_out), dtype=self.device.settings.frame_dtype)
        big = CHUNKS[-1]
        for lo in range(0, b, big):
            part = p[lo : lo + big]
            size = next(c for c in CHUNKS if c >= part.shape[0])
            padded = np.zeros((size, self.n_in), dtype=bool)
            padded[: part.shape[0]] = part
            out[lo : lo + part.shape[0]] = self.device.transform(padded)[: part.shape[0]]
            self.frames += size
        return out

    def forward(self, h: object) -> np.ndarray:
        """y (b, m) float32 of activations h (b, n): binarize, acquire, normalize."""
        h = np.asarray(h, dtype=np.float32)
        if h.ndim != 2 or h.shape[1] != self.n_in:
            raise OpticalLayerError(
                f"the optical layer takes (batch, {self.n_in}) activations, got {h.shape}"
            )
        return normalize(self.acquire(patterns(h)), self.adc_max_dn)


def _roi_pixels(settings: dict) -> int | None:
    r = settings.get("camera_roi") or {}
    return r.get("height_px", 0) * r.get("width_px", 0) if r else None


# ---------------------------------------------------------------------------------- surrogates
def ste_sign(u: jnp.ndarray) -> jnp.ndarray:
    """sign(u) in the forward, identity derivative in the backward (straight-through estimator)."""
    return u + jax.lax.stop_gradient(jnp.sign(u) - u)


def _center(a: jnp.ndarray) -> jnp.ndarray:
    return a - jnp.mean(a, axis=-1, keepdims=True)


def random_matrix(seed: int, n_in: int, n_out: int) -> np.ndarray:
    """The defender's backward matrix W (m, n) float32, i.i.d. N(0, 1/n) from ``seed``."""
    return (np.random.default_rng([seed, 0x0B4D]).standard_normal((n_out, n_in)) / np.sqrt(n_in)).astype(
        np.float32
    )


@dataclass(frozen=True)
class Surrogate:
    """A differentiable stand-in ``s(h)`` (b, n) -> (b, m) for the optical layer's backward.

    ``kind`` in :data:`SURROGATES`; ``matrix``: W (m, n) real for ``random``/``bpda``, B^ (m, n)
    complex for ``tm``; ``scale``: 1 / adc_max for ``tm``, 1 otherwise.
    """

    kind: str
    matrix: np.ndarray
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in SURROGATES:
            raise OpticalLayerError(f"unknown surrogate {self.kind!r}; choose one of {', '.join(SURROGATES)}")

    def __call__(self, h: jnp.ndarray) -> jnp.ndarray:
        ph = _center(h)
        if self.kind == "random":
            return _center(ph @ jnp.asarray(self.matrix).T)
        b = (ste_sign(ph) + 1.0) / 2.0
        if self.kind == "bpda":
            return _center((b @ jnp.asarray(self.matrix).T) ** 2)
        field = b.astype(jnp.complex64) @ jnp.asarray(self.matrix, jnp.complex64).T
        return _center(jnp.abs(field) ** 2 * self.scale)


def surrogate(
    kind: str,
    n_in: int,
    n_out: int,
    *,
    seed: int = 0,
    tm_matrix: np.ndarray | None = None,
    adc_max_dn: float = 255.0,
) -> Surrogate:
    """A :class:`Surrogate` of ``kind``: ``random``/``bpda`` draw W from ``seed``; ``tm`` needs the
    recovered matrix (m, n) complex (``RecoveredTM.matrix``)."""
    if kind == "tm":
        if tm_matrix is None:
            raise OpticalLayerError("the tm surrogate needs the recovered matrix (opu tm-retrieve's tm.npz)")
        if tm_matrix.shape != (n_out, n_in):
            raise OpticalLayerError(f"recovered matrix is {tm_matrix.shape}, the layer is ({n_out}, {n_in})")
        return Surrogate("tm", np.asarray(tm_matrix, np.complex64), 1.0 / float(adc_max_dn))
    return Surrogate(kind, random_matrix(seed, n_in, n_out))


def with_surrogate(
    y_measured: jnp.ndarray, h: jnp.ndarray, s: Callable[[jnp.ndarray], jnp.ndarray]
) -> jnp.ndarray:
    """Value ``y_measured`` (the device's), gradient w.r.t. h that of ``s(h)``."""
    sh = s(h)
    return y_measured + sh - jax.lax.stop_gradient(sh)
