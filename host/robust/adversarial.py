"""PGD adversarial training (Madry et al. 2018): the ROPUST recipe's robust pre-trained backbone.

Each training batch is replaced by its L-inf PGD examples against the current parameters:

    x_0     = clip(x + U(-eps, eps), 0, 1)                                   (random start)
    x_{k+1} = clip(clip(x_k + a sign(grad_x CE(f(x_k), y)), x - eps, x + eps), 0, 1),   k < steps
    a       = 2.5 eps / steps                                                (Madry's step size)

and the model trains on ``x_steps`` in whatever mode the run uses. The attack differentiates the model
by plain autodiff (feedback points are the identity outside a training scope), so it is the true
white-box gradient. The random start is keyed by the run's seed and the batch's content (a CRC of its
bytes): the same batch gets the same examples, so ``--resume`` stays exact.

Pixels must be in [0, 1] (``--input-scale pixels``); the optical model ``cnn-opu`` and graph models
are refused (the device sits in the forward path / the inputs are not images).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from host.train.steps import Batch
from host.train.tasks import ImageTask, TaskError

from .attacks import PGD_STEP_FACTOR


def pgd_examples(
    apply, params, x: jnp.ndarray, y: jnp.ndarray, key: jax.Array, eps: float, steps: int
) -> jnp.ndarray:
    """L-inf PGD examples (b, d) float32 of images x (b, d) in [0, 1] with labels y (b,) int.

    ``apply(params, x) -> logits (b, C)``; ``steps`` >= 1 sign-gradient steps of size 2.5 eps / steps
    from a uniform random start; every iterate is projected onto the eps-ball and the [0, 1] box.
    """
    alpha = PGD_STEP_FACTOR * eps / steps

    def loss(xa):
        return jnp.sum(optax.softmax_cross_entropy_with_integer_labels(apply(params, xa), y))

    def project(xa):
        return jnp.clip(jnp.clip(xa, x - eps, x + eps), 0.0, 1.0)

    x0 = project(x + jax.random.uniform(key, x.shape, x.dtype, -eps, eps))

    def body(_, xa):
        return project(xa + alpha * jnp.sign(jax.grad(loss)(xa)))

    return jax.lax.stop_gradient(jax.lax.fori_loop(0, steps, body, x0))


def batch_key(seed: int, batch: Batch) -> jax.Array:
    """A key from the run's seed and the batch's bytes (same batch -> same random start)."""
    crc = zlib.crc32(np.asarray(batch.y).tobytes(), zlib.crc32(np.asarray(batch.inputs).tobytes()))
    return jax.random.fold_in(jax.random.PRNGKey(seed), crc & 0x7FFFFFFF)


@dataclass
class AdversarialImageTask(ImageTask):
    """An :class:`ImageTask` whose training batches are PGD examples (its :meth:`prepare` hook)."""

    eps: float = field(default=0.1)
    steps: int = field(default=7)
    seed: int = field(default=0)

    def __post_init__(self) -> None:
        self._pgd = jax.jit(partial(pgd_examples, self.model.apply), static_argnames=("steps",))

    def prepare(self, params, batch: Batch) -> Batch:
        """The batch with its images replaced by PGD examples against ``params``."""
        key = batch_key(self.seed, batch)
        x = self._pgd(params, batch.inputs, batch.y, key, self.eps, steps=self.steps)
        return Batch(x, batch.y, batch.w)


def adversarial_task(task: ImageTask, cfg) -> AdversarialImageTask:
    """``task`` trained on PGD examples at ``cfg.adv_train_eps`` (pixels checked; the model by build_task)."""
    if cfg.input_scale != "pixels":
        raise TaskError(
            "--adv-train-eps is an L-inf radius in pixel units: train with --input-scale pixels "
            f"(got --input-scale {cfg.input_scale})"
        )
    return AdversarialImageTask(
        task.data,
        task.model,
        task.batch_size,
        task.alignment_size,
        eps=float(cfg.adv_train_eps),
        steps=int(cfg.adv_train_steps),
        seed=int(cfg.seed),
    )
