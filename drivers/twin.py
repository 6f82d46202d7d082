"""``twin:DIR``: a simulated device whose medium is a recovered transmission matrix.

``DIR`` holds what ``opu tm-retrieve`` writes: ``tm.npz`` (recovered rows B in sqrt(DN), with the
absolute pixel and mirror ids of its rows and columns) and ``twin.json`` (an ``opu.OPUConfig``: the
camera, laser and DMD settings of the retrieval). The device is a :class:`~drivers.sim.SimDevice`
whose bench uses ``opu.RecoveredMedium(B / sqrt(g))``, g = photons_per_mirror_us x exposure_us x
QE x K of the config (docs/tm_retrieval.md, "Twin"), opened with ``n_features`` = the recovered
columns. Frames of a new pattern are then the recovered matrix's prediction with the camera's noise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import numpy as np

import opu

from .base import Device
from .registry import backend
from .sim import SimDevice


def load_tm_arrays(directory: str | Path) -> dict[str, np.ndarray]:
    """The arrays of ``DIR/tm.npz`` needed by a twin (``matrix``, ``pixel_ids``, ``mirror_ids``,
    ``mirrors_per_feature``). Raises ValueError naming the missing file or key."""
    path = Path(directory).expanduser() / "tm.npz"
    if not path.is_file():
        raise ValueError(f"{str(path)!r} is not a file: run `opu tm-retrieve --out {directory}` first")
    try:
        with np.load(path, allow_pickle=False) as z:
            need = ("matrix", "pixel_ids", "mirror_ids", "mirrors_per_feature")
            missing = [k for k in need if k not in z.files]
            if missing:
                raise ValueError(f"{str(path)!r} lacks {missing}: not a tm.npz written by opu tm-retrieve")
            return {k: z[k] for k in need}
    except OSError as exc:
        raise ValueError(f"cannot read {str(path)!r}: {exc}") from None


def twin_medium(config: opu.OPUConfig, arrays: dict[str, np.ndarray]) -> opu.RecoveredMedium:
    """The recovered matrix in the simulator's units for ``config`` (see the module docstring)."""
    c = config.camera
    g = config.laser.photons_per_mirror_us * c.exposure_us * c.quantum_efficiency * c.system_gain_dn_per_e
    if not g > 0:
        raise ValueError("the twin config has no light (photons_per_mirror_us x exposure x QE x K = 0)")
    return opu.RecoveredMedium(arrays["matrix"] / np.sqrt(g), arrays["pixel_ids"], arrays["mirror_ids"],
                               int(arrays["mirrors_per_feature"]))


class TwinDevice(SimDevice):
    """A :class:`SimDevice` on a recovered medium, opened with ``n_features`` = the recovered columns."""

    def __init__(self, *, twin_features: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._twin_features = int(twin_features)

    def open(self) -> TwinDevice:
        super().open()
        self.configure(n_features=self._twin_features)
        return self


@backend("twin", scheme="twin", options=("pattern_memory", "serial", "frame_buffer_bytes"), forms=[
    ("twin:DIR[?seed=3]", "simulator on the matrix recovered by opu tm-retrieve in DIR"),
])
def open_twin_uri(uri: str, **options: Any) -> TwinDevice:
    """The (unopened) twin for ``twin:DIR[?seed=N]`` (see the module docstring); ValueError for a bad
    URI or missing files."""
    body, _, query = uri[len("twin:"):].partition("?")
    params = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    if set(params) - {"seed"}:
        raise ValueError(f"unknown parameter(s) {sorted(set(params) - {'seed'})} in {uri!r}; only 'seed'")
    if not body:
        raise ValueError(f"{uri!r} names no directory; use twin:DIR (the --out of opu tm-retrieve)")
    directory = Path(body).expanduser()
    cfg_path = directory / "twin.json"
    if not cfg_path.is_file():
        raise ValueError(f"{str(cfg_path)!r} is not a file: run `opu tm-retrieve --out {body}` first")
    config = opu.OPUConfig.model_validate_json(cfg_path.read_text())
    if "seed" in params:
        try:
            config = config.replace(seed=int(params["seed"]))
        except ValueError:
            raise ValueError(f"seed in {uri!r} must be an integer, got {params['seed']!r}") from None
    arrays = load_tm_arrays(directory)
    return TwinDevice(config=config, resource=uri, medium=twin_medium(config, arrays),
                      twin_features=int(arrays["matrix"].shape[1]), **options)


def open_twin(uri: str, options: dict[str, Any]) -> Device:
    """Open ``twin:DIR[?seed=N]`` directly (what ``drivers.connect`` does for that form)."""
    return open_twin_uri(uri, **options).open()
