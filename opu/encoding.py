"""Encoders: real or signed data -> binary DMD patterns, and the matching decoders.

* :func:`ternarize`: e -> (e+, e-) with ``e+ = [e > t]``, ``e- = [e < -t]`` (disjoint supports),
  so that ``B e_t = B e+ - B e-`` with ``e_t = e+ - e-`` in {-1, 0, 1} (TinyDFA's ternarized
  projection; docs/physics.md).
* :class:`BitPlanes`: signed fixed-point bit planes with a per-sample scale, MSB first, and the
  decoder that recombines projected planes (lightonml's ``SeparatedBitPlanEncoder`` idea, with
  the magnitude kept per sample).
* :func:`threshold_encode` and :func:`thermometer_encode`: binarisation of features.

All functions take and return numpy arrays; shapes are (batch, features) unless stated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import OPUError, ShapeError


def _as_real_batch(x: object, what: str) -> tuple[np.ndarray, bool]:
    a = np.asarray(x)
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_) or np.iscomplexobj(a):
        raise OPUError(f"{what} must be a real numeric array, got dtype {a.dtype}")
    single = a.ndim == 1
    if single:
        a = a[None, :]
    if a.ndim != 2:
        raise ShapeError(f"{what} must be (n,) or (batch, n), got shape {np.shape(x)}")
    a = a.astype(np.float64, copy=False)
    if not np.isfinite(a).all():
        raise OPUError(f"{what} contains NaN or infinite values")
    return a, single


def ternarize(e: object, threshold: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split a real batch e (b, n) into two disjoint binary patterns (e+, e-), bool (b, n).

    ``threshold`` (>= 0) is a scalar or a per-sample array (b,) or (b, 1). Values with
    ``|e| <= threshold`` map to 0.
    """
    a, single = _as_real_batch(e, "e")
    t = np.asarray(threshold, dtype=np.float64)
    if (t < 0).any() or not np.isfinite(t).all():
        raise OPUError(f"threshold must be finite and >= 0, got {threshold!r}")
    if t.ndim == 1:
        if t.shape[0] != a.shape[0]:
            raise ShapeError(f"per-sample threshold has {t.shape[0]} entries for {a.shape[0]} samples")
        t = t[:, None]
    pos, neg = a > t, a < -t
    return (pos[0], neg[0]) if single else (pos, neg)


def is_ternary(x: np.ndarray) -> bool:
    """True when every value of x is -1, 0 or 1."""
    return bool(np.isin(x, (-1, 0, 1)).all())


@dataclass(frozen=True)
class BitPlanes:
    """Signed bit-plane code of a real batch.

    Attributes
    ----------
    planes:
        bool (2, p, b, n): ``planes[0]`` the positive part, ``planes[1]`` the negative part,
        bit k (MSB first) of ``round(|x| / scale * (2^p - 1))``.
    scale:
        float64 (b,): the per-sample max |x| (1 for an all-zero sample).
    precision:
        p, bits per sign.
    """

    planes: np.ndarray
    scale: np.ndarray
    precision: int

    @classmethod
    def encode(cls, x: object, precision: int = 8) -> BitPlanes:
        """Encode x (b, n) real into 2 x ``precision`` binary planes per sample."""
        if not isinstance(precision, int | np.integer) or not 1 <= precision <= 16:
            raise OPUError(f"precision must be an integer in 1..16 bits, got {precision!r}")
        a, _ = _as_real_batch(x, "x")
        scale = np.abs(a).max(axis=1)
        scale = np.where(scale > 0, scale, 1.0)
        levels = (1 << precision) - 1
        q = np.rint(np.abs(a) / scale[:, None] * levels).astype(np.int64)
        weights = 1 << np.arange(precision - 1, -1, -1)  # MSB first
        bits = (q[None, :, :] // weights[:, None, None]) % 2 == 1  # (p, b, n)
        planes = np.stack([bits & (a > 0)[None], bits & (a < 0)[None]])
        return cls(planes=planes, scale=scale, precision=int(precision))

    @property
    def weights(self) -> np.ndarray:
        """Value of each plane per unit scale, (p,): 2^(p-1-k) / (2^p - 1)."""
        p = self.precision
        return (1 << np.arange(p - 1, -1, -1)) / ((1 << p) - 1)

    def signed_planes(self) -> np.ndarray:
        """Ternary planes (p, b, n) int8: positive minus negative part of each bit."""
        return self.planes[0].astype(np.int8) - self.planes[1].astype(np.int8)

    def decode(self, projected: np.ndarray) -> np.ndarray:
        """Combine projections of the signed planes, (p, b, m) -> (b, m) float64.

        ``projected[k]`` must be the (linear) projection of ``signed_planes()[k]``.
        """
        pr = np.asarray(projected, dtype=np.float64)
        if pr.ndim != 3 or pr.shape[0] != self.precision or pr.shape[1] != self.scale.shape[0]:
            raise ShapeError(
                f"expected projections of shape ({self.precision}, {self.scale.shape[0]}, m), got {pr.shape}"
            )
        return np.tensordot(self.weights, pr, axes=1) * self.scale[:, None]

    def reconstruct(self) -> np.ndarray:
        """The quantized input itself, (b, n) float64 (decode of the identity projection)."""
        return self.decode(self.signed_planes().astype(np.float64))


def threshold_encode(x: object, threshold: float | np.ndarray = 0.0) -> np.ndarray:
    """Binary pattern ``x > threshold`` (threshold scalar or per feature (n,)), bool (b, n)."""
    a, single = _as_real_batch(x, "x")
    out = a > np.asarray(threshold, dtype=np.float64)
    return out[0] if single else out


def thermometer_encode(x: object, thresholds: np.ndarray) -> np.ndarray:
    """Thermometer code: feature j becomes len(thresholds) bits ``x_j > t_k``, bool (b, n * T)."""
    a, single = _as_real_batch(x, "x")
    t = np.asarray(thresholds, dtype=np.float64).ravel()
    if t.size == 0 or (np.diff(t) <= 0).any():
        raise OPUError("thresholds must be a non-empty strictly increasing array")
    out = (a[:, :, None] > t[None, None, :]).reshape(a.shape[0], -1)
    return out[0] if single else out
