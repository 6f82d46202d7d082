"""Attacks: PGD breaks an undefended model; every attack stays in the eps ball and in [0, 1]."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from host.robust import attacks as atk
from host.robust.evaluate import digital_target
from host.train.data import load_digits


@pytest.fixture(scope="module")
def tiny():
    """Softmax regression on 8x8 digit pixels in [0, 1] (an undefended model), trained by full-batch Adam."""
    d = load_digits(standardize=False)
    x, y = jnp.asarray(d.x_train), jnp.asarray(d.y_train)

    def apply(p, xx):
        return xx @ p["w"] + p["b"]

    params = {"w": jnp.zeros((64, 10)), "b": jnp.zeros(10)}
    opt = optax.adam(0.05)
    st = opt.init(params)

    @jax.jit
    def step(p, s):
        g = jax.grad(lambda q: optax.softmax_cross_entropy_with_integer_labels(apply(q, x), y).mean())(p)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s

    for _ in range(300):
        params, st = step(params, st)
    t = digital_target(apply, params, 10)
    return t, d.x_test[:200], d.y_test[:200]


def test_pixels_are_in_unit_range():
    d = load_digits(standardize=False)
    assert d.x_train.min() == 0.0 and d.x_train.max() == 1.0


def test_pgd_drives_an_undefended_model_down(tiny):
    t, x, y = tiny
    clean = atk.accuracy(t, x, y)
    assert clean > 0.9
    adv = atk.accuracy(t, atk.pgd(t, x, y, 0.2, steps=20), y)
    assert adv < 0.1  # a linear model at eps = 0.2 on 64 pixels: PGD must break it
    assert atk.accuracy(t, atk.fgsm(t, x, y, 0.2), y) < clean - 0.5


@pytest.mark.parametrize("attack", ["fgsm", "pgd", "square", "hsj"])
def test_attacks_respect_the_ball_and_the_box(tiny, attack):
    t, x, y = tiny
    x, y = x[:16], y[:16]
    eps = 0.1
    if attack == "fgsm":
        xa = atk.fgsm(t, x, y, eps)
    elif attack == "pgd":
        xa = atk.pgd(t, x, y, eps, steps=5)
    elif attack == "square":
        xa = atk.square(t, x, y, eps, max_queries=20)
    else:
        xa = atk.within(atk.hop_skip_jump(t, x, y, max_iter=2, max_eval=20, init_eval=5), x, eps)
    assert xa.shape == x.shape and xa.dtype == np.float32
    assert np.abs(xa - x).max() <= eps + 1e-6
    assert xa.min() >= 0.0 and xa.max() <= 1.0
    if attack in ("fgsm", "pgd", "square"):
        assert np.abs(xa - x).max() > eps / 2  # it did move


def test_attack_refusals(tiny):
    t, x, y = tiny
    with pytest.raises(atk.AttackError, match=r"\[0, 1\]"):
        atk.fgsm(t, x * 3 - 1, y, 0.1)
    with pytest.raises(atk.AttackError, match="eps"):
        atk.pgd(t, x, y, 2.0)
    with pytest.raises(atk.AttackError, match="steps"):
        atk.pgd(t, x, y, 0.1, steps=0)


def test_pgd_random_start_is_uniform_in_the_ball_entry_by_entry():
    # a flat loss (zero gradient) leaves PGD at its random start: i.i.d. U(-eps, eps) per entry
    eps, b, d = 0.1, 40, 50
    x = np.full((b, d), 0.5, np.float32)  # far from the box edges: no clipping
    flat = atk.Target(predict=lambda z: np.zeros((len(z), 10)), grad=lambda z, y: np.zeros_like(z))
    delta = (atk.pgd(flat, x, np.zeros(b, int), eps, steps=1, seed=3) - x).astype(np.float64).ravel()
    n = delta.size
    assert np.abs(delta).max() <= eps + 1e-7
    assert abs(delta.mean()) < 5 * eps / np.sqrt(3 * n)
    assert delta.var() == pytest.approx(eps**2 / 3, rel=5 * np.sqrt(0.8 / n))  # Var U^2 = 4 eps^4 / 45
    assert len(np.unique(delta)) > 0.99 * n  # not one offset shared by every entry


def test_chunked_passes_the_target_and_the_labels_of_each_chunk():
    seen = []

    def attack(target, x, y, eps, scale):
        seen.append((target, x.copy(), y.copy(), eps))
        return x + scale * y[:, None]

    tgt = atk.Target(predict=lambda z: z)
    x = np.arange(10, dtype=np.float32).reshape(5, 2)
    y = np.array([1, 2, 3, 4, 5])
    out = atk.chunked(attack, tgt, x, y, 0.25, chunk=2, scale=10.0)
    np.testing.assert_array_equal(out, x + 10.0 * y[:, None])
    assert [len(s[1]) for s in seen] == [2, 2, 1]
    assert all(s[0] is tgt and s[3] == 0.25 for s in seen)
    np.testing.assert_array_equal(np.concatenate([s[2] for s in seen]), y)


def test_pgd_random_start_follows_its_seed():
    flat = atk.Target(predict=lambda z: np.zeros((len(z), 10)), grad=lambda z, y: np.zeros_like(z))
    x = np.full((4, 30), 0.5, np.float32)
    y = np.zeros(4, int)
    a, b = (atk.pgd(flat, x, y, 0.1, steps=1, seed=s) for s in (11, 11))
    np.testing.assert_array_equal(a, b)
    # the start is the seed's uniform draw, projected (here: never clipped)
    want = x + np.random.default_rng(11).uniform(-0.1, 0.1, x.shape)
    np.testing.assert_allclose(a, want.astype(np.float32), atol=1e-7)
    assert not np.array_equal(a, atk.pgd(flat, x, y, 0.1, steps=1, seed=12))


def test_worst_case_is_the_lowest_defended_accuracy_at_that_eps():
    from host.robust.evaluate import worst_case

    rep = {"opu": {"pgd_random": {"0.1": 0.4, "0.2": 0.1}, "transfer": {"0.1": 0.3}, "hsj": {"0.2": 0.05}},
           "bp": {"pgd": {"0.1": 0.0}}}
    assert worst_case(rep, 0.1) == (0.3, "transfer")  # the baseline's 0.0 does not count
    assert worst_case(rep, 0.2) == (0.05, "hsj")
    acc, name = worst_case(rep, 0.05)
    assert np.isnan(acc) and name == ""


# ------------------------------------------------------------- the evaluation's attack loop and checks
def _constant_target() -> atk.Target:
    """Predicts class 0 whatever the image: its accuracy under any attack is the share of label 0."""
    logits = np.eye(10, dtype=np.float32)[0]
    return atk.Target(lambda x: np.tile(logits, (len(x), 1)), lambda x, y: np.ones_like(x), 10)


def _pgd_spy(monkeypatch) -> list[tuple[float, dict]]:
    calls: list[tuple[float, dict]] = []
    real = atk.pgd

    def spy(t, x, y, eps, **kw):
        calls.append((eps, kw))
        return real(t, x, y, eps, **kw)

    monkeypatch.setattr(atk, "pgd", spy)
    return calls


N_EVAL = 20
Y_EVAL = np.array([0] * 5 + [3] * 15)  # a constant class-0 model is right on 5 of 20 whatever the attack
X_EVAL = np.random.default_rng(0).uniform(0.2, 0.8, (N_EVAL, 16)).astype(np.float32)


def test_attack_loop_scores_every_attack_on_the_true_labels_with_the_configured_seed(monkeypatch):
    from host.robust import evaluate as ev

    calls = _pgd_spy(monkeypatch)
    t = _constant_target()
    cfg = ev.EvalConfig(eps=(0.1,), attacks=("fgsm", "pgd", "transfer"), pgd_steps=4, seed=7)
    rep = ev.Report()
    ev._attack_eps(cfg, rep, 0.1, X_EVAL, Y_EVAL, t, {"random": t, "bpda": t}, {}, 4, lambda s: None)
    assert rep.bp == {"fgsm": {"0.1": 0.25}, "pgd": {"0.1": 0.25}}
    assert rep.opu == {k: {"0.1": 0.25} for k in ("fgsm_random", "fgsm_bpda", "pgd_random", "pgd_bpda",
                                                  "transfer")}
    # the baseline's PGD (shared with transfer) and one per surrogate, all with the run's seed
    assert calls == [(0.1, {"steps": 4, "seed": 7})] * 3


@pytest.mark.parametrize("robust_baseline, pgd_at_largest, expected", [
    # a plain baseline is checked at the largest attacked eps, from the report
    (False, 0.4, {"eps": 0.2, "pgd_acc_bp": 0.4, "max": 0.05, "passed": False}),
    # an adversarially trained one that holds there is attacked again at large_eps, on the true labels
    (True, 0.4, {"eps": 0.5, "pgd_acc_bp": 0.25, "max": 0.05, "passed": False,
                 "note": "adversarially trained baseline: checked at large_eps"}),
    # ... but not when it is already at the 5 % bound
    (True, 0.05, {"eps": 0.2, "pgd_acc_bp": 0.05, "max": 0.05, "passed": True}),
])
def test_sanity_checks_follow_their_rules(monkeypatch, robust_baseline, pgd_at_largest, expected):
    from host.robust import evaluate as ev

    calls = _pgd_spy(monkeypatch)
    t = _constant_target()
    cfg = ev.EvalConfig(eps=(0.1, 0.2), pgd_steps=4, seed=3)
    rep = ev.Report()
    rep.bp = {"fgsm": {"0.1": 0.3}, "pgd": {"0.1": 0.2, "0.2": pgd_at_largest}, "square": {"0.1": 0.5}}
    rep.opu = {"pgd_random": {"0.1": 0.6}, "transfer": {"0.1": 0.1}, "hsj": {"0.1": 0.4}}
    ev._sanity(cfg, rep, X_EVAL, Y_EVAL, t, {"random": t, "bpda": t}, {}, lambda s: None,
               robust_baseline=robust_baseline)
    san = rep.sanity
    assert san["undefended_to_zero"] == expected
    assert san["defended_to_zero_at_large_eps"] == {"eps": 0.5, "acc_opu": 0.25, "max": 0.15, "passed": False}

    def tol(p):  # two binomial standard errors on 20 images
        return max(0.02, 2 * np.sqrt(p * (1 - p) / N_EVAL))

    # black box against white box at sanity_eps: square/hsj only on one side, transfer on neither
    assert san["black_box_not_better_bp"] == {"eps": 0.1, "best_white_box": 0.2, "best_black_box": 0.5,
                                              "tolerance": pytest.approx(tol(0.2)), "passed": True}
    assert san["black_box_not_better_opu"] == {"eps": 0.1, "best_white_box": 0.6, "best_black_box": 0.4,
                                               "tolerance": pytest.approx(tol(0.6)), "passed": True}
    for name in ("bp", "opu_random", "opu_bpda"):
        assert san[f"more_steps_{name}"] == {"eps": 0.1, "acc_4": 0.25, "acc_8": 0.25,
                                             "tolerance": pytest.approx(tol(0.25)), "passed": True}
    # the baseline's PGD at large_eps with the run's seed, then each target's PGD with 4 and 8 steps
    # (seed + 1: not the images of the attack loop)
    assert calls == [(0.5, {"steps": 4, "seed": 3})] + [(0.1, {"steps": 4, "seed": 4}),
                                                        (0.1, {"steps": 8, "seed": 4})] * 3


def test_attack_loop_makes_the_baselines_pgd_images_for_transfer_alone(monkeypatch):
    from host.robust import evaluate as ev

    calls = _pgd_spy(monkeypatch)
    t = _constant_target()
    cfg = ev.EvalConfig(eps=(0.2,), attacks=("transfer",), pgd_steps=2, seed=5)
    rep = ev.Report()
    ev._attack_eps(cfg, rep, 0.2, X_EVAL, Y_EVAL, t, {"random": t, "bpda": t}, {}, 2, lambda s: None)
    # transfer needs the baseline's PGD images even when PGD itself is not asked for
    assert rep.bp == {"pgd": {"0.2": 0.25}} and rep.opu == {"transfer": {"0.2": 0.25}}
    assert calls == [(0.2, {"steps": 2, "seed": 5})]


def _softmax_regression(seed: int = 0):
    """A linear model with its input gradient in closed form: dCE/dx = (softmax(x W) - onehot(y)) W^T."""
    w = np.random.default_rng(seed).normal(size=(16, 10)).astype(np.float32)

    def grad(x, y):
        z = x.astype(np.float64) @ w
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        return (p - np.eye(10)[y]) @ w.T

    return atk.Target(lambda x: x @ w, grad, 10), grad


def test_pgd_without_random_start_starts_at_the_image():
    t, grad = _softmax_regression()
    x, y = X_EVAL[:6], np.arange(6)
    got = atk.pgd(t, x, y, 0.05, steps=2, step_size=0.03, random_start=False)
    want = x.astype(np.float64)
    for _ in range(2):  # two signed steps from x itself, each projected on the ball and the box
        step = want + 0.03 * np.sign(grad(want.astype(np.float32), y))
        want = np.clip(np.clip(step, x - 0.05, x + 0.05), 0, 1)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert np.abs(got - x).max() == pytest.approx(0.05, abs=1e-6)  # the second step reaches the ball's edge


def test_a_float64_batch_is_attacked_as_its_float32_image():
    t, _ = _softmax_regression(1)
    x64 = np.random.default_rng(2).uniform(0.2, 0.8, (12, 16))  # values float32 cannot hold exactly
    y = np.arange(12) % 10
    x32 = x64.astype(np.float32)
    np.testing.assert_array_equal(atk.fgsm(t, x64, y, 0.1), atk.fgsm(t, x32, y, 0.1))
    np.testing.assert_array_equal(atk.pgd(t, x64, y, 0.1, steps=3, seed=1),
                                  atk.pgd(t, x32, y, 0.1, steps=3, seed=1))
