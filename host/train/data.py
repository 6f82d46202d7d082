"""Datasets for the trainer: scikit-learn's bundled ``digits`` (offline default) and IDX files.

Every loader returns a :class:`Dataset` of float32 features, standardized with the training set's
per-feature mean and standard deviation, and int32 labels. Fashion-MNIST / MNIST are read from
IDX files (``*-idx3-ubyte`` / ``*-idx1-ubyte``, gzip-compressed or raw) in ``--data-dir`` or, for
Fashion-MNIST, in the directory Debian's ``dataset-fashion-mnist`` package installs.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: where Debian's ``dataset-fashion-mnist`` package puts the IDX files
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
DATASETS = ("digits", "fashion-mnist", "mnist")
#: IDX base names of the MNIST family (the same for MNIST and Fashion-MNIST)
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DatasetError(ValueError):
    """A dataset is missing, unknown or malformed (the message says what to do)."""


@dataclass(frozen=True)
class Dataset:
    """A classification dataset, features standardized with training statistics.

    Attributes
    ----------
    x_train, x_test:
        float32 (N, d) features.
    y_train, y_test:
        int32 (N,) labels in [0, n_classes).
    name, n_classes, source:
        Dataset name, number of classes, where it was read from.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    source: str
    image_shape: tuple[int, int] | None = None  # (H, W) of the flattened grey images, None if not images

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (gzip or raw, chosen by the magic bytes) into a numpy array."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_DTYPES:
        raise DatasetError(f"{path} is not an IDX file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    data = np.frombuffer(raw, dtype=dtype, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DatasetError(
            f"{path}: header says {dims} ({int(np.prod(dims))} values), file holds {data.size}")
    return data.reshape(dims)


def _find_idx(directory: Path, base: str) -> Path | None:
    for name in (base, base + ".gz", base.replace("-idx", ".idx"), base.replace("-idx", ".idx") + ".gz"):
        p = directory / name
        if p.is_file():
            return p
    return None


def _idx_dirs(name: str, data_dir: Path | None) -> list[Path]:
    dirs: list[Path] = []
    if data_dir is not None:
        dirs += [data_dir, data_dir / name, data_dir / name.replace("-", "_")]
    if name == "fashion-mnist":
        dirs.append(DEBIAN_FASHION_MNIST)
    return dirs


def _install_hint(name: str) -> str:
    if name == "fashion-mnist":
        return (
            "install Debian's package (`sudo apt-get install dataset-fashion-mnist`, files in "
            f"{DEBIAN_FASHION_MNIST}) or download the four *-ubyte.gz files from "
            "https://github.com/zalandoresearch/fashion-mnist into --data-dir"
        )
    return "download train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz "\
        "and t10k-labels-idx1-ubyte.gz (MNIST) into --data-dir"


def load_idx_dataset(name: str, data_dir: Path | None = None, standardize: bool = True) -> Dataset:
    """Fashion-MNIST or MNIST from IDX files; raises :class:`DatasetError` with an install hint.

    ``standardize=False`` keeps pixels in [0, 1] (adversarial robustness, issue 13: the L-inf ball
    and the [0, 1] box are defined on pixels)."""
    tried = _idx_dirs(name, data_dir)
    for d in tried:
        paths = {k: _find_idx(d, base) for k, base in IDX_FILES.items()}
        if all(paths.values()):
            arr = {k: read_idx(p) for k, p in paths.items()}  # type: ignore[arg-type]
            xtr = arr["train_images"].reshape(arr["train_images"].shape[0], -1).astype(np.float32) / 255
            xte = arr["test_images"].reshape(arr["test_images"].shape[0], -1).astype(np.float32) / 255
            ytr, yte = arr["train_labels"].astype(np.int32), arr["test_labels"].astype(np.int32)
            if xtr.shape[0] != ytr.shape[0] or xte.shape[0] != yte.shape[0]:
                raise DatasetError(f"{d}: image and label counts differ")
            return _standardized(name, xtr, ytr, xte, yte, 10, str(d), tuple(arr["train_images"].shape[1:3]),
                                 standardize)
    where = ", ".join(str(d) for d in tried) or "(no directory: pass --data-dir)"
    raise DatasetError(f"dataset {name!r} not found in {where}; {_install_hint(name)}")


def load_digits(seed: int = 0, test_fraction: float = 0.2, standardize: bool = True) -> Dataset:
    """scikit-learn's bundled 8x8 digits (1797 samples, 64 features), split by a fixed seed
    (``standardize=False``: pixels in [0, 1])."""
    from sklearn.datasets import load_digits as _sk_digits

    bunch = _sk_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int32)
    perm = np.random.default_rng(seed).permutation(x.shape[0])
    n_test = round(test_fraction * x.shape[0])
    te, tr = perm[:n_test], perm[n_test:]
    return _standardized("digits", x[tr], y[tr], x[te], y[te], 10, "sklearn.datasets.load_digits", (8, 8),
                         standardize)


def _standardized(name, xtr, ytr, xte, yte, n_classes, source, image_shape=None, standardize=True) -> Dataset:
    if not standardize:  # issue 13: raw pixels in [0, 1]
        return Dataset(name, xtr.astype(np.float32), ytr, xte.astype(np.float32), yte, n_classes, source,
                       image_shape)
    mean = xtr.mean(axis=0)
    std = xtr.std(axis=0)
    std = np.where(std > 1e-6, std, 1.0)  # constant pixels (image borders) stay 0
    norm = lambda a: ((a - mean) / std).astype(np.float32)  # noqa: E731
    return Dataset(name, norm(xtr), ytr, norm(xte), yte, n_classes, source, image_shape)


def load_dataset(name: str, data_dir: str | Path | None = None, standardize: bool = True) -> Dataset:
    """Load ``name`` (one of :data:`DATASETS`); ``standardize=False`` keeps pixels in [0, 1]."""
    if name == "digits":
        return load_digits(standardize=standardize)
    if name in ("fashion-mnist", "mnist"):
        return load_idx_dataset(name, Path(data_dir) if data_dir is not None else None, standardize)
    raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
