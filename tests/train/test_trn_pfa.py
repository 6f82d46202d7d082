"""PFA (Li & Benna 2024): one step against its formula, written out in numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from host.train.models import mlp
from host.train.pfa import PFASteps, discover_linears
from host.train.steps import Batch


def test_pfa_step_matches_its_formula():
    b, d, h, c, k, lr, lam = 6, 5, 7, 4, 3, 0.1, 0.01
    net = mlp((h,), c, "tanh")
    params = net.init(jax.random.PRNGKey(0), d)
    rng = np.random.default_rng(0)
    batch = Batch(
        jnp.asarray(rng.normal(size=(b, d)), jnp.float32),
        jnp.asarray(rng.integers(0, c, b), jnp.int32),
        jnp.ones((b,), jnp.float32),
    )
    linears = discover_linears(net.apply, params, batch.inputs)
    assert linears == [("dense1", (d, h)), ("out", (h, c))]
    pfa = PFASteps(net.apply, optax.sgd(lr), linears, jax.random.PRNGKey(1), k=k, decay=lam)
    aux = pfa.init_aux()
    assert (
        set(aux["r"]) == {"out"} and aux["r"]["out"].shape == (k * c, h) and pfa.b["out"].shape == (c, k * c)
    )
    new, _, new_aux, _, _ = pfa.step(params, optax.sgd(lr).init(params), aux, batch)

    x = np.asarray(batch.inputs, np.float64)
    w1, b1 = np.asarray(params[0]["w"], np.float64), np.asarray(params[0]["b"], np.float64)
    w2, b2 = np.asarray(params[1]["w"], np.float64), np.asarray(params[1]["b"], np.float64)
    bm, r = np.asarray(pfa.b["out"], np.float64), np.asarray(aux["r"]["out"], np.float64)
    a1 = x @ w1 + b1
    h1 = np.tanh(a1)
    z = h1 @ w2 + b2
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    delta_out = (p - np.eye(c)[np.asarray(batch.y)]) / b
    g_w2 = h1.T @ delta_out
    delta_h = (delta_out @ bm) @ r  # PFA: through B R instead of W2^T
    g_w1 = x.T @ (delta_h * (1 - h1**2))
    np.testing.assert_allclose(w2 - np.asarray(new[1]["w"]), lr * g_w2, atol=1e-6)
    np.testing.assert_allclose(w1 - np.asarray(new[0]["w"]), lr * g_w1, atol=1e-6)
    # R <- R - lr (B^T grad_W^T + lambda R)
    np.testing.assert_allclose(r - np.asarray(new_aux["r"]["out"]), lr * (bm.T @ g_w2.T + lam * r), atol=1e-6)


def test_pfa_alignment_reports_path_alignment():
    net = mlp((8,), 3, "tanh")
    params = net.init(jax.random.PRNGKey(0), 4)
    x = jnp.ones((5, 4))
    batch = Batch(x, jnp.zeros((5,), jnp.int32), jnp.ones((5,)))
    linears = discover_linears(net.apply, params, x)
    pfa = PFASteps(net.apply, optax.sgd(0.1), linears, jax.random.PRNGKey(1), k=10)
    aux = pfa.init_aux()
    # make B R = W^T exactly: R = pinv(B) W^T (B has full row rank) -> path alignment 1, PFA == BP
    w = np.asarray(params[1]["w"], np.float64)
    aux["r"]["out"] = jnp.asarray(np.linalg.pinv(np.asarray(pfa.b["out"], np.float64)) @ w.T, jnp.float32)
    cu, path = pfa.alignment(params, aux, batch)
    assert np.isnan(float(path[0])) and abs(float(path[1]) - 1) < 1e-5
    np.testing.assert_allclose(np.asarray(cu), [1.0, 1.0], atol=1e-4)
