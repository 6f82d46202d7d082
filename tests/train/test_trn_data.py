"""Dataset loaders: IDX parsing (gz and raw), the bundled digits, clear errors."""

import gzip
import struct

import numpy as np
import pytest

from host.train import data as tdata


def _write_idx(path, arr, compress):
    header = b"\x00\x00\x08" + bytes([arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    raw = header + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


@pytest.mark.parametrize("compress", [True, False])
def test_idx_directory_roundtrip(tmp_path, compress):
    rng = np.random.default_rng(0)
    imgs = {k: rng.integers(0, 256, size=(n, 28, 28)) for k, n in (("train", 30), ("t10k", 12))}
    labels = {k: rng.integers(0, 10, size=v.shape[0]) for k, v in imgs.items()}
    ext = ".gz" if compress else ""
    for k in imgs:
        _write_idx(tmp_path / f"{k}-images-idx3-ubyte{ext}", imgs[k], compress)
        _write_idx(tmp_path / f"{k}-labels-idx1-ubyte{ext}", labels[k], compress)
    ds = tdata.load_dataset("mnist", tmp_path)
    assert ds.x_train.shape == (30, 784) and ds.x_test.shape == (12, 784)
    np.testing.assert_array_equal(ds.y_test, labels["t10k"])
    # standardization with training statistics, computed here independently
    x = imgs["train"].reshape(30, -1) / 255.0
    mu, sd = x.mean(0), x.std(0)
    sd = np.where(sd > 1e-6, sd, 1.0)
    np.testing.assert_allclose(ds.x_train, (x - mu) / sd, rtol=1e-4, atol=1e-4)


def test_bad_idx_magic(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(tdata.DatasetError, match="not an IDX file"):
        tdata.read_idx(p)


def test_missing_dataset_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(tdata, "DEBIAN_FASHION_MNIST", tmp_path / "nowhere")
    with pytest.raises(tdata.DatasetError, match="apt-get install dataset-fashion-mnist"):
        tdata.load_dataset("fashion-mnist", tmp_path)
    with pytest.raises(tdata.DatasetError, match="unknown dataset"):
        tdata.load_dataset("cifar", None)


def test_digits_offline():
    ds = tdata.load_dataset("digits")
    assert ds.x_train.shape[1] == 64 and ds.n_classes == 10
    assert ds.x_train.shape[0] + ds.x_test.shape[0] == 1797
    assert set(np.unique(ds.y_train)) == set(range(10))
