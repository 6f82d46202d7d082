"""The optical layer: its forward is the device's frames; each surrogate's backward has its stated form."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import drivers
from host.robust.optical import (
    OpticalLayer,
    OpticalLayerError,
    Surrogate,
    patterns,
    random_matrix,
    surrogate,
    with_surrogate,
)

N, M = 32, 64


@pytest.fixture(scope="module")
def layer():
    dev = drivers.connect("sim")
    lay = OpticalLayer.attach(dev, N, M)
    dev.set_noise(False)  # frames then depend only on the pattern (and a slow drift)
    yield lay
    dev.close()


def test_forward_equals_the_devices_frames(layer):
    rng = np.random.default_rng(1)
    h = rng.normal(size=(20, N)).astype(np.float32)  # 20 > 16: a padded chunk of 256
    y = layer.forward(h)
    # independently: the patterns sign(h - mean) acquired directly, normalised by hand
    p = np.stack([row > row.mean() for row in h])
    assert p.sum(1).min() > 0 and (p != patterns(h)).sum() == 0
    frames = layer.device.acquire(p).astype(np.float64)
    ref = frames / 255.0 - (frames / 255.0).mean(axis=1, keepdims=True)
    assert y.shape == (20, M) and y.dtype == np.float32
    assert np.abs(y - ref).max() <= 2.5 / 255  # the medium drifts slowly between the two acquisitions
    assert np.mean(np.isclose(y, ref, atol=1e-6)) > 0.9
    assert np.allclose(y.mean(axis=1), 0, atol=1e-6)
    assert frames.std() > 3  # real speckle, not a dark device


def test_forward_refuses_wrong_width(layer):
    with pytest.raises(OpticalLayerError, match=r"\(batch, 32\)"):
        layer.forward(np.zeros((2, N + 1)))
    for bad in ((2, N + 1), (N,), (1, 2, N)):  # patterns of another width or rank, before any frame
        before = layer.frames
        with pytest.raises(OpticalLayerError) as err:
            layer.acquire(np.zeros(bad, bool))
        assert str(err.value) == f"the optical layer takes (batch, {N}) inputs, got {bad}"
        assert layer.frames == before


def _vjp(s: Surrogate, h: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y0 = np.random.default_rng(5).normal(size=g.shape).astype(np.float32)
    val, f = jax.vjp(lambda hh: with_surrogate(jnp.asarray(y0), hh, s), jnp.asarray(h))
    assert np.allclose(np.asarray(val), y0, atol=1e-5)  # the value is the measured one, whatever s is
    return np.asarray(f(jnp.asarray(g))[0], np.float64), y0


def _centering(k: int) -> np.ndarray:
    return np.eye(k) - np.ones((k, k)) / k


@pytest.mark.parametrize("kind", ["random", "bpda", "tm"])
def test_surrogate_backward_has_the_stated_form(kind):
    rng = np.random.default_rng(2)
    h = rng.normal(size=(3, N)).astype(np.float32)
    g = rng.normal(size=(3, M)).astype(np.float32)
    P, Q = _centering(N), _centering(M)
    if kind == "tm":
        B = (rng.normal(size=(M, N)) + 1j * rng.normal(size=(M, N))) * 0.3
        s = surrogate("tm", N, M, tm_matrix=B, adc_max_dn=255.0)
    else:
        s = surrogate(kind, N, M, seed=7)
        W = random_matrix(7, N, M).astype(np.float64)
        assert abs(W.std() * np.sqrt(N) - 1) < 0.1  # N(0, 1/n) entries
    got, _ = _vjp(s, h, g)
    for i in range(3):
        b = (h[i] > h[i].mean()).astype(np.float64)
        if kind == "random":
            jac = Q @ W @ P
        elif kind == "bpda":
            jac = Q @ np.diag(W @ b) @ W @ P
        else:
            f = B.astype(np.complex64).astype(np.complex128) @ b
            jac = Q @ np.real(np.diag(np.conj(f)) @ B) @ P / 255.0
        np.testing.assert_allclose(got[i], jac.T @ g[i], rtol=2e-3, atol=2e-4 * np.abs(jac.T @ g[i]).max())


def test_surrogate_refusals():
    with pytest.raises(OpticalLayerError, match="choose one of random, bpda, tm"):
        surrogate("exact", N, M)
    with pytest.raises(OpticalLayerError, match="recovered matrix"):
        surrogate("tm", N, M)
    with pytest.raises(OpticalLayerError, match=r"\(64, 32\)"):
        surrogate("tm", N, M, tm_matrix=np.zeros((M, N + 1), complex))


def test_acquire_keeps_the_frame_dtype_and_chunks_large_batches(layer):
    # 300 patterns: one full chunk of 256 and one of 44 padded to 256; every row is its own pattern's frame
    rng = np.random.default_rng(7)
    p = rng.random((300, N)) < 0.5
    before = layer.frames
    got = layer.acquire(p)
    assert got.shape == (300, M) and got.dtype == np.dtype(layer.device.settings.frame_dtype)
    assert layer.frames - before == 512
    ref = layer.device.acquire(p).astype(np.float64)
    assert np.abs(got.astype(np.float64) - ref).max() <= 2.5  # DN: the medium drifts slowly in between
    assert np.mean(got.astype(np.float64) == ref) > 0.9


def test_attach_refuses_stored_settings_of_another_layer(layer):
    stored = layer.settings
    dev = drivers.connect("sim")
    try:
        for n_in, n_out in ((N + 1, M), (N, M // 2)):
            with pytest.raises(OpticalLayerError) as err:
                OpticalLayer.attach(dev, n_in, n_out, stored)
            assert str(err.value) == (f"stored settings are for {N} features and {M} pixels, the layer needs "
                                      f"{n_in} and {n_out}")
        assert dev.frames_acquired == 0
    finally:
        dev.close()
