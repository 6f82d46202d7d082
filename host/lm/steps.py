"""The Transformer on the trainer's feedback points (:mod:`host.train.points`, :mod:`host.train.steps`).

A batch is ``Batch(inputs=x (b, T), y (b, T), w = 1 (b, T))`` with x the window's first T bytes and y
the next ones: the per-sample (lead) axes are (b, T), one output error per token, so the loss is the
mean next-token cross-entropy over the b·T positions and each block's DFA signal is

    δ_i(token) = s · F_i(token) / (bT)        F_i: block i's d_model slice of the projection of e(token)

with e(token) = softmax(logits) − onehot(next byte) ∈ R^V and s the feedback normalization (1/√V with
``fan_in``). Block i's output passes ``feedback_point(h, "block{i}")``; the projection is split across
the points by :class:`host.train.points.PointLayout`, and the cut, the injection, the alignment per point
and the optax update are :class:`host.train.steps.Steps`' own. The device call happens between
``forward_error`` and ``dfa_step``, outside ``jit``, on the (b·T, V) errors.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from host.train.points import PointLayout, discover_points, feedback_point
from host.train.steps import Batch, Steps

from . import model as tf


def lm_batch(tokens: np.ndarray | jnp.ndarray) -> Batch:
    """Batch of windows (b, T+1) int32: inputs the first T tokens, targets the next T, weights 1."""
    t = jnp.asarray(tokens, jnp.int32)
    return Batch(t[:, :-1], t[:, 1:], jnp.ones(t[:, 1:].shape, jnp.float32))


def fan_in_scale(normalization: str, vocab: int, d_model: int) -> float:
    """Feedback normalization (as :func:`host.train.feedback.layer_scales`): 1/√V, 1/√d or 1."""
    if normalization == "fan_in":
        return 1.0 / math.sqrt(vocab)
    if normalization == "fan_out":
        return 1.0 / math.sqrt(d_model)
    return 1.0


class LMSteps:
    """Compiled steps for one Transformer shape: :class:`Steps` plus held-out NLL.

    ``layout`` has one point per block, each of per-token shape (d_model,), so the projection has
    ``n_feedback = n_blocks · d_model`` outputs per token (the camera ROI of optical feedback).
    """

    def __init__(self, cfg: tf.TransformerConfig, optimizer: optax.GradientTransformation,
                 normalization: str = "fan_in") -> None:
        self.cfg = cfg

        def apply(params, x):
            return tf.logits(params, x, cfg, feedback_point)

        self.apply = apply
        example = jnp.zeros((1, cfg.context), jnp.int32)
        params = jax.eval_shape(lambda: tf.init(cfg, jax.random.PRNGKey(0)))
        self.layout: PointLayout = discover_points(apply, params, example, lead_ndim=2)
        if self.layout.names != cfg.point_names:
            raise AssertionError(f"unexpected feedback points {self.layout.names}")
        scale = fan_in_scale(normalization, cfg.vocab, cfg.d_model)
        self.steps = Steps(apply, optimizer, self.layout, [scale] * len(self.layout.points))
        self.eval_nll = jax.jit(self._eval_nll)

    @property
    def n_feedback(self) -> int:
        return self.layout.total

    def _eval_nll(self, params, tokens):
        """Summed next-token NLL in nats over windows (b, T+1), and per-position NLL (b, T)."""
        x, y = tokens[:, :-1], tokens[:, 1:]
        nll = tf.token_nll(tf.logits(params, x, self.cfg), y)
        return nll.sum(), nll
