"""The learning-rate schedule of a run (``TrainConfig.lr_schedule``)."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pydantic
import pytest

from host.train.trainer import TrainConfig, make_optimizer


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_sgd_steps_follow_the_schedule_formula(schedule):
    lr, total = 0.1, 20
    cfg = TrainConfig(optimizer="sgd", momentum=0.0, lr=lr, lr_schedule=schedule)
    opt = make_optimizer(cfg, total)
    params = {"w": jnp.zeros(3)}
    state = opt.init(params)
    g = {"w": jnp.array([1.0, -2.0, 0.5])}
    for t in range(total + 2):
        upd, state = opt.update(g, state, params)
        # plain SGD: update = -lr_t g, lr_t from the closed form (cosine: lr/2 (1 + cos(pi t / T)), 0 after T)
        want = lr if schedule == "constant" else lr * 0.5 * (1 + math.cos(math.pi * min(t, total) / total))
        np.testing.assert_allclose(np.asarray(upd["w"]), -want * np.asarray(g["w"]), rtol=1e-5, atol=1e-8)


def test_unknown_schedule_is_refused_by_name():
    with pytest.raises(pydantic.ValidationError, match="lr_schedule"):
        TrainConfig(lr_schedule="linear")
