"""The recovered transmission matrix as a file (``tm.npz``) and what it answers digitally.

``tm.npz`` keys (format version 1; :func:`drivers.twin.load_tm_arrays` reads the same file):

* ``matrix`` (m, n) complex128: recovered rows B, sqrt(DN) units, so that ``dark_dn + |B x|^2`` is the
  expected frame (DN) of data pattern x at the recorded settings;
* ``anchor_fields`` (m, S) complex128: ``B a_s`` in the same per-row frame (last = ``B r``);
* ``dark_dn`` (m,); ``pixel_ids`` (m,), ``pixel_rows``/``pixel_cols`` (m,) on the sensor;
  ``mirror_ids`` (n,), ``feature_rows``/``feature_cols`` (n,) top-left mirror of each column;
  ``mirrors_per_feature`` (macro-pixel area);
* ``settings_json`` (device settings during the acquisition), ``plan_json``, ``identity_json``,
  ``diagnostics_json`` (scalars), per-row diagnostics ``diag_<name>`` (m,), ``device_time_s``
  (device clock at the end of the acquisition), ``format_version``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from opu.camera import SENSOR_STRIDE
from opu.config import DMD_MAX_WIDTH_MIRRORS

from .errors import TMFileError

FORMAT_VERSION = 1


@dataclass
class RecoveredTM:
    """A recovered matrix with its maps, settings and diagnostics.

    ``predict_frames`` and ``linear_transform`` answer digitally what the device answers optically.
    """

    matrix: np.ndarray
    anchor_fields: np.ndarray
    dark_dn: np.ndarray
    pixel_ids: np.ndarray
    mirror_ids: np.ndarray
    mirrors_per_feature: int
    settings: dict[str, Any]
    plan: dict[str, Any]
    identity: dict[str, Any] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    row_diagnostics: dict[str, np.ndarray] = field(default_factory=dict)
    device_time_s: float = 0.0

    @property
    def shape(self) -> tuple[int, int]:
        return self.matrix.shape  # type: ignore[return-value]

    @property
    def adc_max_dn(self) -> float:
        return float(2 ** int(self.settings["bit_depth"]) - 1)

    def _check_x(self, x: object, what: str) -> tuple[np.ndarray, bool]:
        a = np.asarray(x)
        single = a.ndim == 1
        a = a[None] if single else a
        if a.ndim != 2 or a.shape[1] != self.shape[1]:
            n = self.shape[1]
            raise ValueError(f"{what} needs (b, {n}) or ({n},) input, got {np.shape(x)}")
        if np.iscomplexobj(a) or not np.isfinite(a.astype(np.float64)).all():
            raise ValueError(f"{what} needs finite real input")
        return a.astype(np.float64), single

    def predict_intensity(self, x: object) -> np.ndarray:
        """|B x|^2 (b, m) in DN above dark for patterns x (b, n) (any real x: the field is linear)."""
        a, single = self._check_x(x, "predict_intensity")
        out = np.abs(a @ self.matrix.T) ** 2
        return out[0] if single else out

    def predict_frames(self, x: object, clip: bool = True) -> np.ndarray:
        """Expected frames (b, m) float64 DN: dark + |B x|^2, clipped to the ADC range if ``clip``."""
        out = self.predict_intensity(x) + self.dark_dn
        return np.clip(out, 0.0, self.adc_max_dn) if clip else out

    def linear_transform(self, x: object) -> np.ndarray:
        """A x digitally, with A the effective matrix of the device's ``anchor`` linear scheme.

        ``A_ij = c Re(conj(B r)_i B_ij) / |B r|_i``, r the largest anchor = all n_a anchor features, the
        reference of ``opu.AnchorScheme(n, anchor_features=n_a)`` (the device's default scheme when
        n_a = n), ``c = sqrt(2 n_a / mean_i |B r|_i^2)``: exactly the device's
        normalisation with the reference measured by the retrieval. Invariant to each row's phase and
        conjugation, so it equals the device's A up to noise. Any real x (b, n), no bit planes.
        """
        a, single = self._check_x(x, "linear_transform")
        out = a @ self.effective_matrix().T
        return out[0] if single else out

    def effective_matrix(self) -> np.ndarray:
        """A (m, n) float64 of :meth:`linear_transform`."""
        ref = self.anchor_fields[:, -1]
        n_a = int(self.plan["anchor_features"])
        c = np.sqrt(2.0 * n_a / np.mean(np.abs(ref) ** 2))
        return c * (np.conj(ref)[:, None] * self.matrix).real / np.abs(ref)[:, None]

    # ------------------------------------------------------------------ file
    def save(self, path: str | Path) -> Path:
        """Write ``tm.npz`` (atomically: a temporary file renamed over the target)."""
        path = Path(path)
        rows, cols = np.divmod(self.pixel_ids.astype(np.int64), SENSOR_STRIDE)
        frows, fcols = np.divmod(self.mirror_ids.astype(np.int64), DMD_MAX_WIDTH_MIRRORS)
        arrays: dict[str, Any] = dict(
            matrix=self.matrix, anchor_fields=self.anchor_fields, dark_dn=self.dark_dn,
            pixel_ids=self.pixel_ids, pixel_rows=rows, pixel_cols=cols, mirror_ids=self.mirror_ids,
            feature_rows=frows, feature_cols=fcols, mirrors_per_feature=np.int64(self.mirrors_per_feature),
            settings_json=json.dumps(self.settings), plan_json=json.dumps(self.plan),
            identity_json=json.dumps(self.identity), diagnostics_json=json.dumps(self.diagnostics),
            device_time_s=np.float64(self.device_time_s), format_version=np.int64(FORMAT_VERSION),
        )
        for k, v in self.row_diagnostics.items():
            arrays[f"diag_{k}"] = v
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> RecoveredTM:
        """Read a ``tm.npz`` written by :meth:`save` (raises :class:`TMFileError`)."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                d = {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            raise TMFileError(f"cannot read {str(path)!r}: {exc}") from None
        if int(d.get("format_version", -1)) != FORMAT_VERSION:
            raise TMFileError(f"{str(path)!r} is not a tm.npz of format {FORMAT_VERSION}")
        return cls(
            matrix=d["matrix"], anchor_fields=d["anchor_fields"], dark_dn=d["dark_dn"],
            pixel_ids=d["pixel_ids"], mirror_ids=d["mirror_ids"],
            mirrors_per_feature=int(d["mirrors_per_feature"]),
            settings=json.loads(str(d["settings_json"])), plan=json.loads(str(d["plan_json"])),
            identity=json.loads(str(d["identity_json"])), diagnostics=json.loads(str(d["diagnostics_json"])),
            row_diagnostics={k[5:]: v for k, v in d.items() if k.startswith("diag_")},
            device_time_s=float(d["device_time_s"]),
        )
