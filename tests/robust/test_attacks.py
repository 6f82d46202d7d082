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
