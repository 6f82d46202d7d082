"""The private DFA step on the feedback-point trainer, against the DFA update written out by hand.

With SGD at learning rate 1 the update is minus the gradient. For a tanh MLP x -> h1 -> h2 -> logits,
batch weight W = b, noisy output error T (b, C) and noisy feedback F = [F1 | F2] (b, d1 + d2), the
private step must give (docs/privacy.md section 3, docs/training.md section on DFA):

    output layer:  dW3 = h2^T T / W,  db3 = sum_i T_i / W         (T in place of the true error e)
    hidden l:      delta_l = s_l F_l / W * (1 - h_l^2),  dW_l = h_{l-1}^T delta_l,  db_l = sum_i delta_l
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from host.privacy import PrivacyConfig
from host.train import TrainConfig, TrainingError, discover_points, mlp, train
from host.train.steps import Batch, Steps


def test_private_step_is_the_hand_written_dfa_update_with_the_noisy_output_error():
    b, d, widths, c = 6, 5, (4, 3), 3
    scales = (0.7, 1.3)
    net = mlp(widths, c, "tanh")
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((b, d)), jnp.float32)
    y = jnp.asarray(rng.integers(0, c, b), jnp.int32)
    batch = Batch(x, y, jnp.ones((b,), jnp.float32))
    params = net.init(jax.random.PRNGKey(1), x)
    layout = discover_points(net.apply, params, x)
    assert layout.names == ("dense1", "dense2") and layout.total == sum(widths)
    steps = Steps(net.apply, optax.sgd(1.0), layout, scales)
    opt_state = steps.opt.init(params)
    top = jnp.asarray(rng.standard_normal((b, c)), jnp.float32)
    fb = jnp.asarray(rng.standard_normal((b, sum(widths))), jnp.float32)

    _, _, e, wsum, vjp = steps.forward_error(params, batch)
    new, _ = steps.dfa_step_private(params, opt_state, vjp, top, wsum, fb)

    p = [{k: np.asarray(v, np.float64) for k, v in layer.items()} for layer in params]
    xs, t, f = np.asarray(x, np.float64), np.asarray(top, np.float64), np.asarray(fb, np.float64)
    h1 = np.tanh(xs @ p[0]["w"] + p[0]["b"])
    h2 = np.tanh(h1 @ p[1]["w"] + p[1]["b"])
    d1 = scales[0] * f[:, :4] / b * (1 - h1**2)
    d2 = scales[1] * f[:, 4:] / b * (1 - h2**2)
    want = [
        {"w": p[0]["w"] - xs.T @ d1, "b": p[0]["b"] - d1.sum(0)},
        {"w": p[1]["w"] - h1.T @ d2, "b": p[1]["b"] - d2.sum(0)},
        {"w": p[2]["w"] - h2.T @ t / b, "b": p[2]["b"] - t.sum(0) / b},
    ]
    for got_layer, want_layer in zip(new, want, strict=True):
        for k in ("w", "b"):
            np.testing.assert_allclose(np.asarray(got_layer[k]), want_layer[k], rtol=1e-5, atol=1e-6)
    # with the true error in place of the noisy one it is exactly the ordinary DFA step
    same, _ = steps.dfa_step_private(params, opt_state, vjp, e, wsum, fb)
    ref, _ = steps.dfa_step(params, opt_state, vjp, e, wsum, fb)
    for a, r in zip(jax.tree_util.tree_leaves(same), jax.tree_util.tree_leaves(ref), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(r), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kw,match", [
    (dict(model="cnn"), "--model mlp"),
    (dict(mode="pfa"), "dfa or optical-dfa"),
    (dict(mode="shallow"), "dfa or optical-dfa"),
])
def test_private_training_refuses_models_and_modes_it_does_not_cover(tmp_path, kw, match):
    base = dict(mode="dfa", dataset="digits", hidden=(16,), batch_size=64, epochs=1,
                privacy=PrivacyConfig(epsilon=3.0))
    with pytest.raises(TrainingError, match=match):
        train(TrainConfig(**{**base, **kw}), tmp_path, progress=False)
    assert not (tmp_path / "checkpoint.npz").exists()


def test_cli_refuses_dp_flags_for_the_transformer(tmp_path, capsys):
    from host.cli import main as cli_main

    rc = cli_main(["train", "--model", "transformer", "--dp-epsilon", "3", "--out", str(tmp_path / "lm")])
    assert rc == 2 and "--model mlp" in capsys.readouterr().err
    assert not (tmp_path / "lm").exists()
