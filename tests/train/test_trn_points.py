"""Feedback points: the DFA backward against a hand-computed formula, bp == autodiff, discovery, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from host.train import FeedbackPointError, TrainConfig, TrainingError, train
from host.train.models import cnn, gcn, normalized_adjacency
from host.train.points import discover_points, feedback_point, perturbing
from host.train.steps import Batch, Steps, weighted_loss

B, D, C = 5, 4, 3


def _params(seed=0):
    k = jax.random.split(jax.random.PRNGKey(seed), 3)
    return {
        "w1": jax.random.normal(k[0], (D, 6)) / 2,
        "w2": jax.random.normal(k[1], (6, 8)) / 2,
        "w3": jax.random.normal(k[2], (8, C)) / 2,
    }


def _model(p, x, points=True):
    """A plain-function model; its second point has a 2-D per-sample shape (2, 4)."""
    fp = feedback_point if points else (lambda a, _name: a)
    h1 = fp(jnp.tanh(x @ p["w1"]), "first")
    h2 = fp(jnp.tanh(h1 @ p["w2"]).reshape(-1, 2, 4), "second")
    return h2.reshape(-1, 8) @ p["w3"]


def _batch(seed=1):
    rng = np.random.default_rng(seed)
    return Batch(
        jnp.asarray(rng.normal(size=(B, D)), jnp.float32),
        jnp.asarray(rng.integers(0, C, B), jnp.int32),
        jnp.ones((B,), jnp.float32),
    )


def test_point_backward_is_the_hand_computed_dfa_gradient():
    p, batch = _params(), _batch()
    layout = discover_points(_model, p, batch.inputs)
    assert layout.names == ("first", "second") and layout.sizes == (6, 8) and layout.total == 14
    steps = Steps(_model, optax.sgd(1.0), layout, scales=(0.5, 2.0))
    _, _, e, wsum, vjp = steps.forward_error(p, batch)
    fb = np.random.default_rng(2).normal(size=(B, 14))
    new, _ = steps.dfa_step(p, optax.sgd(1.0).init(p), vjp, e, wsum, jnp.asarray(fb, jnp.float32))
    # numpy, float64: DFA (reference 4.1) with the error e = softmax - onehot, point after tanh
    x, w1, w2, w3 = (np.asarray(v, np.float64) for v in (batch.inputs, p["w1"], p["w2"], p["w3"]))
    y = np.asarray(batch.y)
    h1 = np.tanh(x @ w1)
    h2 = np.tanh(h1 @ w2)
    z = h2 @ w3
    prob = np.exp(z - z.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    err = prob - np.eye(C)[y]
    d1 = 0.5 * fb[:, :6] / B * (1 - h1**2)
    d2 = 2.0 * fb[:, 6:] / B * (1 - h2**2)
    expected = {"w1": x.T @ d1, "w2": h1.T @ d2, "w3": h2.T @ err / B}
    for k, g in expected.items():
        np.testing.assert_allclose(np.asarray(p[k]) - np.asarray(new[k]), g, atol=1e-5, err_msg=k)


def test_bp_through_points_is_plain_autodiff():
    p, batch = _params(3), _batch(4)
    g_points = jax.grad(lambda q: weighted_loss(_model(q, batch.inputs), batch.y, batch.w))(p)
    g_plain = jax.grad(lambda q: weighted_loss(_model(q, batch.inputs, points=False), batch.y, batch.w))(p)
    for k in p:
        np.testing.assert_array_equal(np.asarray(g_points[k]), np.asarray(g_plain[k]))
    # the cut + injection machinery fed with BP's own signal dL/dh (from the perturbing scope) is BP too
    layout = discover_points(_model, p, batch.inputs)
    steps = Steps(_model, optax.sgd(1.0), layout, scales=(1.0, 1.0))
    _, _, e, wsum, vjp = steps.forward_error(p, batch)
    eps = {"first": jnp.zeros((B, 6)), "second": jnp.zeros((B, 2, 4))}
    bp = jax.grad(lambda ep: _loss_eps(p, batch, ep))(eps)
    fb = jnp.concatenate([bp["first"], bp["second"].reshape(B, 8)], axis=1) * B  # the signal is s F / W
    g_inj = steps._dfa_grads(vjp, e, wsum, fb)
    for k in p:
        np.testing.assert_allclose(np.asarray(g_inj[k]), np.asarray(g_plain[k]), rtol=1e-5, atol=1e-7)


def _loss_eps(p, batch, eps):
    with perturbing(eps):
        return weighted_loss(_model(p, batch.inputs), batch.y, batch.w)


def test_discovery_of_conv_and_graph_points():
    net = cnn((28, 28), 10)
    x = jnp.zeros((2, 784))
    layout = discover_points(net.apply, net.init(jax.random.PRNGKey(0)), x)
    assert layout.names == ("conv1", "conv2", "dense")
    assert layout.sizes == (14 * 14 * 32, 7 * 7 * 64, 128) and layout.total == 9536
    g = gcn(5, 3, hidden=16)
    graph = normalized_adjacency(np.array([[0, 1], [1, 2]]), 4)
    inputs = (jnp.zeros((4, 5)), graph)
    lg = discover_points(g.apply, g.init(jax.random.PRNGKey(0)), inputs)
    assert lg.names == ("gcn1",) and lg.sizes == (16,)


def test_dense_only_point_backpropagates_its_signal_into_the_conv_blocks():
    """``--cnn-feedback dense``: one point; the conv blocks get its DFA signal through the dense layer."""
    net = cnn((8, 8), 3, channels=(2,), dense_width=5, activation="tanh", conv_points=False)
    p = net.init(jax.random.PRNGKey(7))
    rng = np.random.default_rng(8)
    x = jnp.asarray(rng.random((B, 64)), jnp.float32)
    batch = Batch(x, jnp.asarray(rng.integers(0, 3, B), jnp.int32), jnp.ones((B,), jnp.float32))
    layout = discover_points(net.apply, p, x)
    assert layout.names == ("dense",) and layout.sizes == (5,)
    steps = Steps(net.apply, optax.sgd(1.0), layout, scales=(0.5,))
    _, _, e, wsum, vjp = steps.forward_error(p, batch)
    fb = jnp.asarray(rng.normal(size=(B, 5)), jnp.float32)
    new, _ = steps.dfa_step(p, optax.sgd(1.0).init(p), vjp, e, wsum, fb)

    def dense_out(q):  # the same network written out with lax (independent of the model's code)
        h = jax.lax.conv_general_dilated(
            x.reshape(B, 8, 8, 1), q["conv1"]["w"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        h = jnp.tanh(h + q["conv1"]["b"])
        h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        return jnp.tanh(h.reshape(B, -1) @ q["dense"]["w"] + q["dense"]["b"])

    # DFA: the block below the point descends <0.5 fb / B, h_dense>, autodiff doing the rest
    expected = jax.grad(lambda q: jnp.sum(dense_out(q) * 0.5 * fb / B))(p)
    for layer in ("conv1", "dense"):
        for k in ("w", "b"):
            np.testing.assert_allclose(
                np.asarray(p[layer][k]) - np.asarray(new[layer][k]),
                np.asarray(expected[layer][k]),
                atol=1e-6,
                err_msg=f"{layer}.{k}",
            )
    assert float(jnp.abs(expected["conv1"]["w"]).max()) > 1e-4  # the conv block does get a signal


def test_shape_errors_are_typed():
    p, batch = _params(), _batch()
    layout = discover_points(_model, p, batch.inputs)
    with pytest.raises(FeedbackPointError, match=r"13 values per sample.*need 14"):
        layout.split(jnp.zeros((B, 13)))
    with pytest.raises(FeedbackPointError, match="no feedback point"):
        discover_points(lambda q, x: x @ q["w1"], p, batch.inputs)

    def twice(q, x):
        return feedback_point(feedback_point(x, "a"), "a")

    with pytest.raises(FeedbackPointError, match="used twice"):
        discover_points(twice, p, batch.inputs)


def test_dfa_mode_without_points_fails_before_the_first_step(tmp_path, monkeypatch):
    import host.train.tasks as tasks

    real = tasks.mlp

    class NoPoints:
        def __init__(self, net):
            self.net = net

        def init(self, key, inputs):
            return self.net.init(key, inputs)

        def apply(self, params, x):
            return x @ params[0]["w"] @ params[-1]["w"][: params[0]["w"].shape[1]]

    monkeypatch.setattr(tasks, "mlp", lambda *a, **k: NoPoints(real((10,), 10)))
    with pytest.raises(FeedbackPointError, match="no feedback point"):
        train(TrainConfig(mode="dfa", epochs=1, hidden=(10,), batch_size=64), tmp_path, progress=False)
    assert not (tmp_path / "checkpoint.npz").exists() and not (tmp_path / "metrics.jsonl").exists()
    with pytest.raises(TrainingError, match="graph dataset"):
        train(
            TrainConfig(mode="dfa", model="gcn", dataset="digits", epochs=1), tmp_path / "g", progress=False
        )
