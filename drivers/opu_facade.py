"""A high-level ``OPU`` object modeled on ``lightonml.OPU``, on top of any :class:`~drivers.base.Device`.

    >>> from drivers import OPU                                       # doctest: +SKIP
    >>> with OPU(n_components=1024, max_n_features=784) as opu_:      # doctest: +SKIP
    ...     opu_.fit1d(n_features=784)
    ...     y = opu_.transform(x_binary)         # (N, 784) 0/1 -> (N, 1024) uint8 frames
    ...     z = opu_.linear_transform(x_real)    # (N, 784) real -> (N, 1024) float64, A x

Differences from lightonml 1.4.3 (see docs/drivers.md, "Migrating from lightonml"):

* ``transform`` returns the camera's **uint8** frames (uint16 at 10/12 bits) with shot, read and
  quantization noise, as the hardware does; lightonml's simulator returns noiseless float32
  ``|xR|^2``. It returns a plain ``numpy.ndarray``, not a ``ContextArray``; settings are on
  ``opu.device.settings``.
* Non-binary input to ``transform`` raises :class:`opu.PatternError` (lightonml's simulator casts
  silently). Encode real data first (``opu.encoding``) or use ``linear_transform``.
* ``linear_transform`` returns ``A x`` with A real i.i.d. N(0, 1) (m x n): each output has variance
  ``||x||^2``. ``rescale="variance"`` divides by ``sqrt(n_features)`` and ``rescale="norm"`` by
  ``sqrt(n_components)`` like lightonml's hardware path; the default ``"none"`` keeps A x.
* ``device`` is a URI (``"sim"``, ``"sim:twin.json"``, a VISA resource string) or a ``Device``;
  there is no ``simulated=`` flag and no config file: the same code runs on the simulator and on the
  instrument. ``fit1d(X)`` does not adapt the exposure to X (set ``exposure_us`` on the device).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

import opu

from .base import Device
from .errors import DriverError

Rescale = Literal["none", "variance", "norm"]


class NotFittedError(DriverError):
    """``transform``/``linear_transform`` called before ``fit1d``/``fit2d``."""


class OPU:
    """Random projections on an OPU, lightonml style.

    Parameters
    ----------
    n_components:
        Number of outputs m = camera pixels (a centred camera ROI of exactly m pixels).
    max_n_features:
        Largest input size ``fit1d``/``fit2d`` accept.
    device:
        ``"sim"`` (default), ``"sim:PATH.json"``, ``"sim?seed=3"``, a VISA resource string, or an
        open or closed :class:`~drivers.base.Device` (a device opened here is closed by ``close``).
    open_at_init:
        Open the device in the constructor (lightonml's default).
    disable_pbar:
        Never show the acquisition progress bar.
    rescale:
        Scaling of ``linear_transform`` output, see the module docstring.
    linear_scheme, precision:
        How ``linear_transform`` gets A x from intensities (``"anchor"`` or ``"complement"``) and
        the bit-plane precision for non-ternary input (:meth:`Device.linear_transform`).
    connect_options:
        Passed to :func:`drivers.connect` (e.g. ``timeout_s``) when ``device`` is a string.
    """

    def __init__(
        self,
        n_components: int = 4096,
        max_n_features: int = 1000,
        device: str | Device = "sim",
        *,
        open_at_init: bool = True,
        disable_pbar: bool = False,
        rescale: Rescale = "none",
        linear_scheme: str = "anchor",
        precision: int = 8,
        **connect_options: Any,
    ) -> None:
        self._n_components = _positive_int(n_components, "n_components")
        self._max_n_features = _positive_int(max_n_features, "max_n_features")
        if rescale not in ("none", "variance", "norm"):
            raise ValueError(f"rescale must be 'none', 'variance' or 'norm', got {rescale!r}")
        self.rescale: Rescale = rescale
        self.disable_pbar = disable_pbar
        self.linear_scheme = linear_scheme
        self.precision = precision
        self._target = device
        self._connect_options = connect_options
        self._device: Device | None = device if isinstance(device, Device) else None
        self._owns_device = False
        self._n_features: int | None = None
        self._feature_shape: tuple[int, ...] | None = None
        if open_at_init:
            self.open()

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> OPU:
        """Connect to the device (idempotent) and set the camera ROI for ``n_components``."""
        if self._device is None or not self._device.is_open:
            if isinstance(self._target, Device):
                self._owns_device = not self._target.is_open
                self._device = self._target.open()
            else:
                from . import connect

                self._device = connect(self._target, **self._connect_options)
                self._owns_device = True
        self._apply_components()
        return self

    def close(self) -> None:
        """Release the device if this object opened it (idempotent)."""
        if self._device is not None and self._owns_device:
            self._device.close()
        self._owns_device = False

    @property
    def active(self) -> bool:
        return self._device is not None and self._device.is_open

    def __enter__(self) -> OPU:
        self._was_active = self.active
        return self.open()

    def __exit__(self, *exc: object) -> None:
        if not getattr(self, "_was_active", False):
            self.close()

    @property
    def device(self) -> Device:
        """The underlying :class:`~drivers.base.Device` (open it with :meth:`open`)."""
        if self._device is None or not self._device.is_open:
            raise DriverError("the OPU is not open: call open() or use it as a context manager")
        return self._device

    # ------------------------------------------------------------------ properties
    @property
    def n_components(self) -> int:
        return self._n_components

    @n_components.setter
    def n_components(self, value: int) -> None:
        self._n_components = _positive_int(value, "n_components")
        if self.active:
            self._apply_components()

    @property
    def max_n_features(self) -> int:
        return self._max_n_features

    @property
    def n_features(self) -> int | None:
        """Input size set by the last fit (None before)."""
        return self._n_features

    def _apply_components(self) -> None:
        roi = opu.centred_roi(self._n_components)
        dev = self.device
        if dev.settings.camera_roi.model_dump() != roi.model_dump():
            dev.configure(camera_roi=roi.model_dump())

    # ------------------------------------------------------------------ fit
    def fit1d(self, X: object = None, n_features: int | None = None) -> OPU:
        """Prepare transforms of vectors of ``n_features`` (or ``X.shape[-1]``) features."""
        if X is None and n_features is None:
            raise ValueError("fit1d needs X or n_features")
        n = int(np.shape(X)[-1]) if X is not None else _positive_int(n_features, "n_features")
        self._fit((n,))
        return self

    def fit2d(self, X: object = None, n_features: tuple[int, int] | None = None) -> OPU:
        """Prepare transforms of 2-D inputs (h, w) (``X.shape[-2:]`` or ``n_features``), raveled
        row-major onto the DMD features."""
        if X is None and n_features is None:
            raise ValueError("fit2d needs X or n_features=(h, w)")
        shape = tuple(np.shape(X)[-2:]) if X is not None else tuple(n_features)  # type: ignore[arg-type]
        if len(shape) != 2:
            raise ValueError(f"fit2d needs 2-D features, got shape {shape}")
        self._fit((int(shape[0]), int(shape[1])))
        return self

    def _fit(self, shape: tuple[int, ...]) -> None:
        n = int(np.prod(shape))
        if n < 1 or n > self._max_n_features:
            raise ValueError(f"{n} input features is outside 1..max_n_features={self._max_n_features}")
        self._feature_shape = shape
        self._n_features = n
        self._set_device_features(n)

    def _set_device_features(self, n: int) -> None:
        if self.device.n_features != n:
            self.device.configure(n_features=n)

    # ------------------------------------------------------------------ transforms
    def _flatten(self, X: object) -> tuple[np.ndarray, tuple[int, ...]]:
        if self._feature_shape is None or self._n_features is None:
            raise NotFittedError("call fit1d or fit2d before transform")
        a = np.asarray(X)
        k = len(self._feature_shape)
        if a.ndim < k or a.shape[a.ndim - k:] != self._feature_shape:
            raise opu.ShapeError(f"input of shape {a.shape} does not end with the fitted feature "
                                 f"shape {self._feature_shape}")
        lead = a.shape[: a.ndim - k]
        return a.reshape(-1, self._n_features), lead

    def transform(self, X: object) -> np.ndarray:
        """Camera frames |B x|^2 for binary X (..., n) -> (..., n_components) uint8/uint16."""
        x, lead = self._flatten(X)
        self._set_device_features(x.shape[1])
        frames = self.device.acquire(x, progress=False if self.disable_pbar else None)
        return frames.reshape(*lead, self._n_components)

    def linear_transform(self, X: object) -> np.ndarray:
        """A x for real X (..., n) -> (..., n_components) float64 (see ``rescale``)."""
        x, lead = self._flatten(X)
        y = self.device.linear_transform(x, scheme=self.linear_scheme, precision=self.precision)
        if self.rescale == "variance":
            y = y / np.sqrt(x.shape[1])
        elif self.rescale == "norm":
            y = y / np.sqrt(self._n_components)
        return y.reshape(*lead, self._n_components)

    def fit_transform1d(self, X: object) -> np.ndarray:
        return self.fit1d(X).transform(X)

    def fit_transform2d(self, X: object) -> np.ndarray:
        return self.fit2d(X).transform(X)

    def __repr__(self) -> str:
        where = self._device.resource if self._device is not None else self._target
        return (f"OPU(n_components={self._n_components}, max_n_features={self._max_n_features}, "
                f"device={where!r}, active={self.active})")


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


__all__ = ["OPU", "NotFittedError"]
