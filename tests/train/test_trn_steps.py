"""The jitted DFA pieces (feedback points + one VJP) against gradients written out by hand (numpy)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from host.train.models import mlp
from host.train.points import discover_points
from host.train.steps import Batch, Steps


def _setup(hidden=(7,), n_in=5, n_cls=4, b=6, seed=0):
    net = mlp(hidden, n_cls, "tanh")
    params = net.init(jax.random.PRNGKey(seed), n_in)
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(b, n_in)), jnp.float32)
    y = jnp.asarray(rng.integers(0, n_cls, size=b), jnp.int32)
    return net, params, Batch(x, y, jnp.ones((b,), jnp.float32))


def _steps(net, params, batch, opt, scales):
    layout = discover_points(net.apply, params, batch.inputs)
    return Steps(net.apply, opt, layout, scales)


def test_dfa_update_matches_hand_written_gradient():
    net, params, batch = _setup()
    opt = optax.sgd(1.0)
    steps = _steps(net, params, batch, opt, (0.5,))
    _, _, e, wsum, vjp = steps.forward_error(params, batch)
    fb = jnp.asarray(np.random.default_rng(1).normal(size=(6, 7)), jnp.float32)
    new, _ = steps.dfa_step(params, opt.init(params), vjp, e, wsum, fb)
    # by hand: delta = 0.5 F * (1 - tanh(a)^2) / b ; dW1 = x^T delta
    xn, w1, b1 = (np.asarray(batch.inputs, np.float64), np.asarray(params[0]["w"], np.float64),
                  np.asarray(params[0]["b"]))
    a = xn @ w1 + b1
    delta = 0.5 * np.asarray(fb) * (1 - np.tanh(a) ** 2) / 6
    np.testing.assert_allclose(np.asarray(params[0]["w"]) - np.asarray(new[0]["w"]), xn.T @ delta, atol=1e-5)
    # top layer: the true gradient (softmax - onehot) / b
    h = np.tanh(a)
    p = np.exp(h @ np.asarray(params[1]["w"]) + np.asarray(params[1]["b"]))
    p /= p.sum(1, keepdims=True)
    g = h.T @ (p - np.eye(4)[np.asarray(batch.y)]) / 6
    np.testing.assert_allclose(np.asarray(params[1]["w"]) - np.asarray(new[1]["w"]), g, atol=1e-5)


def test_alignment_is_one_when_feedback_is_the_bp_signal():
    # one hidden layer: BP's dL/dh = e W2^T / b, so F = e W2^T with scale 1 reproduces BP exactly
    net, params, batch = _setup()
    steps = _steps(net, params, batch, optax.sgd(0.1), (1.0,))
    _, _, e, _, _ = steps.forward_error(params, batch)
    fb = e @ params[1]["w"].T
    cu, cm, _ = steps.alignment(params, batch, fb)
    np.testing.assert_allclose([float(cu[0]), float(cm[0])], [1.0, 1.0], atol=1e-5)
    cu, cm, _ = steps.alignment(params, batch, -fb)
    np.testing.assert_allclose([float(cu[0]), float(cm[0])], [-1.0, -1.0], atol=1e-5)


@pytest.mark.parametrize("decay", [0.0, 0.1])
def test_shallow_leaves_hidden_layers_unchanged(decay):
    net, params, batch = _setup(hidden=(7, 3))
    opt = optax.chain(optax.add_decayed_weights(decay), optax.adam(1e-2))  # not even weight decay
    steps = _steps(net, params, batch, opt, (1.0, 1.0))
    _, _, e, wsum, vjp = steps.forward_error(params, batch)
    new, _ = steps.shallow_step(params, opt.init(params), vjp, e, wsum)
    for old_l, new_l in zip(params[:-1], new[:-1], strict=True):
        np.testing.assert_array_equal(np.asarray(old_l["w"]), np.asarray(new_l["w"]))
    assert not np.allclose(np.asarray(params[-1]["w"]), np.asarray(new[-1]["w"]))
