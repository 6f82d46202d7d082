"""Feedback projections for DFA: one global random projection of the output error per step.

For a batch of output errors ``e`` (b, C) (``softmax(logits) - onehot(y)`` per sample) a projector
returns ``F = e A^T`` (b, m), ``A`` real i.i.d. N(0, 1) (m x C) and m the sum of the hidden widths;
hidden layer l reads columns ``[o_l, o_l + d_l)`` (:func:`feedback_slices`), scaled by
:func:`layer_scales`.

* :class:`DigitalFeedback` - ``A`` drawn once from a JAX key; the product runs on the host.
* :class:`OpticalFeedback` - the product comes from the device: ``device.linear_transform`` of
  the ternarized error (4 frames per sample with the anchor scheme) or of its bit planes
  (4 x precision frames per sample). The call happens outside ``jit``, once per step, for the
  whole batch; by default each distinct binary pattern of the step is acquired once
  (``FeedbackConfig.share_repeats``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

import opu
from drivers.base import Device

from .exposure import ExposureReport, auto_expose


class FeedbackConfig(BaseModel):
    """How the error is projected and scaled.

    normalization:
        ``"fan_in"`` divides the projection by sqrt(C) (unit-scale feedback whatever the number of
        classes), ``"fan_out"`` layer l's slice by sqrt(d_l), ``"none"`` keeps ``A e``.
    encoding:
        optical only: ``"ternary"`` (e_t = [e > t] - [e < -t], 4 frames a sample) or
        ``"bitplanes"`` (``precision`` signed bit planes, 4 x precision frames a sample).
    threshold, threshold_mode:
        ``"stochastic"`` (default): unbiased stochastic ternarization, e_t,ij = sign(e_ij) with
        probability |e_ij| / s_i and 0 otherwise, s_i = max_j |e_ij|, rescaled by s_i, so that
        E[s e_t] = e: the feedback is the digital DFA feedback plus zero-mean noise (the
        deterministic thresholds drop the small wrong-class errors and bias the update towards
        the true class only; docs/training.md has the comparison). ``"fixed"``: t = threshold;
        ``"adaptive"``: t_i = threshold x max_j |e_ij| per sample.
    rescale:
        ternary only: ``"norm"`` multiplies sample i's projection by ||e_i|| / ||e_t,i|| so its
        scale follows the error as digital DFA's does (0 when e_t,i = 0); ``"none"`` keeps A e_t.
    share_repeats:
        optical only: acquire each distinct binary pattern of a step once
        (``Device.linear_transform(share_repeats=True)``). The ternarized errors of a batch
        repeat a handful of patterns (the negative part is the one-hot true class), so a step
        takes about 5x fewer frames - on hardware as in simulation - and the samples that repeat
        a pattern share its noise draw. ``False`` gives every sample its own 4 frames.
    exposure_target_frac:
        auto-exposure target of the all-on frames' 99.9th percentile, fraction of the ADC range
        (:mod:`host.train.exposure`); ``None`` keeps the device's macro-pixels and exposure.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    normalization: Literal["none", "fan_in", "fan_out"] = "fan_in"
    encoding: Literal["ternary", "bitplanes"] = "ternary"
    threshold: float = Field(0.1, ge=0.0, le=1.0)
    threshold_mode: Literal["stochastic", "fixed", "adaptive"] = "stochastic"
    rescale: Literal["norm", "none"] = "norm"
    precision: int = Field(6, ge=1, le=16)
    scheme: Literal["anchor", "complement"] = "anchor"
    share_repeats: bool = True
    exposure_target_frac: float | None = Field(0.6, gt=0.0, lt=1.0)


def feedback_slices(sizes: Sequence[int]) -> list[tuple[int, int]]:
    """Column ranges [lo, hi) of each hidden layer in the global projection."""
    out, lo = [], 0
    for d in sizes:
        out.append((lo, lo + int(d)))
        lo += int(d)
    return out


def layer_scales(cfg: FeedbackConfig, sizes: Sequence[int], n_classes: int) -> tuple[float, ...]:
    """Factor applied to each hidden layer's slice of the projection."""
    if cfg.normalization == "fan_in":
        return tuple(1.0 / math.sqrt(n_classes) for _ in sizes)
    if cfg.normalization == "fan_out":
        return tuple(1.0 / math.sqrt(d) for d in sizes)
    return tuple(1.0 for _ in sizes)


def ternary_error(
    e: np.ndarray, cfg: FeedbackConfig, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(e_t (b, C) float64 in {-1, 0, 1}, per-sample rescale (b,)) for errors e (b, C).

    ``rng`` drives the stochastic mode (the trainer passes one keyed by seed, epoch and step so
    that a resumed run draws the same ternarizations).
    """
    e = np.asarray(e, dtype=np.float64)
    if cfg.threshold_mode == "stochastic":
        if rng is None:
            raise ValueError("stochastic ternarization needs an explicit numpy Generator (rng=...)")
        s = np.abs(e).max(axis=1)
        s = np.where(s > 0, s, 1.0)
        keep = rng.random(e.shape) < np.abs(e) / s[:, None]
        return np.sign(e) * keep, s
    t = cfg.threshold * np.abs(e).max(axis=1) if cfg.threshold_mode == "adaptive" else cfg.threshold
    pos, neg = opu.ternarize(e, t)
    et = pos.astype(np.float64) - neg.astype(np.float64)
    if cfg.rescale == "norm":
        ne = np.linalg.norm(et, axis=1)
        scale = np.where(ne > 0, np.linalg.norm(e, axis=1) / np.maximum(ne, 1e-30), 0.0)
    else:
        scale = np.ones(e.shape[0])
    return et, scale


class DigitalFeedback:
    """``F = e A^T`` with ``A`` (m, C) i.i.d. N(0, 1) drawn from ``key`` (float32)."""

    def __init__(self, key: jax.Array, n_outputs: int, n_classes: int) -> None:
        self.matrix = jax.random.normal(key, (n_outputs, n_classes), jnp.float32)

    def begin_epoch(self) -> None:
        """Nothing to refresh: the matrix is fixed."""

    def project(self, e: jnp.ndarray, rng: np.random.Generator | None = None) -> jnp.ndarray:
        """``e A^T`` of the exact error (``rng`` unused: no encoding)."""
        return _digital(jnp.asarray(e, jnp.float32), self.matrix)


@jax.jit
def _digital(e: jnp.ndarray, a: jnp.ndarray) -> jnp.ndarray:
    return e @ a.T


class OpticalFeedback:
    """``F ~ e A^T`` measured by ``device`` (open). Call :meth:`setup` once before projecting.

    Attributes
    ----------
    saturation_warnings:
        opu.SaturationWarning count since construction (frames at the ADC maximum).
    exposure:
        The auto-exposure report (None when it was skipped).
    """

    def __init__(self, device: Device, n_outputs: int, n_classes: int, cfg: FeedbackConfig) -> None:
        self.device = device
        self.n_outputs = int(n_outputs)
        self.n_classes = int(n_classes)
        self.cfg = cfg
        self.saturation_warnings = 0
        self.exposure: ExposureReport | None = None
        self.scheme = opu.make_scheme(cfg.scheme, self.n_classes)

    def setup(self, settings: dict | None = None) -> dict:
        """Configure the camera ROI (m pixels) and features; run auto-exposure.

        ``settings`` (a ``DeviceSettings`` dump, e.g. from a checkpoint) is applied as is instead,
        without acquiring anything. Returns the device settings dump in use.
        """
        dev = self.device
        if settings is not None:
            dev.configure(**settings)
        else:
            roi = opu.centred_roi(self.n_outputs)
            dev.configure(
                n_features=self.scheme.device_features,
                camera_roi={"row": roi.row, "col": roi.col, "height_px": roi.height_px,
                            "width_px": roi.width_px},
            )
            if self.cfg.exposure_target_frac is not None:
                self.exposure = auto_expose(dev, target_frac=self.cfg.exposure_target_frac)
        if dev.n_outputs != self.n_outputs:
            raise ValueError(f"device gives {dev.n_outputs} outputs, the network needs {self.n_outputs}")
        return dev.settings.model_dump(mode="json")

    def begin_epoch(self) -> None:
        """Re-measure the dark and reference frames (the medium drifts between epochs)."""
        self._projector().recalibrate()

    def _projector(self) -> opu.LinearProjector:
        return self.device.projector(self.n_classes, self.cfg.scheme, self.cfg.precision)

    def project(self, e: object, rng: np.random.Generator | None = None) -> np.ndarray:
        """Projection (b, m) float32 of errors e (b, C): one device call for the whole batch.

        ``rng``: the Generator of the stochastic ternarization (required in that mode)."""
        e = np.asarray(e, dtype=np.float64)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", opu.SaturationWarning)
            # ternary: project e_t and rescale per sample; bit planes: project e itself
            x, scale = ternary_error(e, self.cfg, rng) if self.cfg.encoding == "ternary" else (e, None)
            # float32 from the frames on: the step's host arithmetic is memory-bound (issue 17)
            out = self.device.linear_transform(x, self.cfg.scheme, self.cfg.precision,
                                               share_repeats=self.cfg.share_repeats, dtype=np.float32)
            if scale is not None:
                out = np.multiply(out, scale.astype(np.float32)[:, None], out=out)
        for w in caught:
            if issubclass(w.category, opu.SaturationWarning):
                self.saturation_warnings += 1
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return np.asarray(out, dtype=np.float32)
