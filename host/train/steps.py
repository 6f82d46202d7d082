"""Jitted pieces of a training step: forward + error, BP step, DFA step, alignment, evaluation.

Shapes: x (b, d) float32, y (b,) int32, logits (b, C), output error ``e = softmax - onehot`` (b, C)
per sample, feedback F (b, m) with m = sum of hidden widths. The loss is the batch-mean softmax
cross-entropy, so the true top-layer gradient carries a 1/b; DFA's hidden-layer signal does too::

    delta_l = (s_l F[:, slice_l]) * f'(a_l) / b          (reference section 4.1)
    grad theta_l = vjp(theta -> layer_l(theta, h_{l-1}))(delta_l)

Everything here is pure; the device call happens between :meth:`Steps.forward_error` and
:meth:`Steps.dfa_step`, outside ``jit``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp
import optax

from .feedback import feedback_slices
from .models import Network


def _loss(logits: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def _cosine(a: jnp.ndarray, b: jnp.ndarray, axis=None) -> jnp.ndarray:
    num = jnp.sum(a * b, axis=axis)
    den = jnp.sqrt(jnp.sum(a * a, axis=axis) * jnp.sum(b * b, axis=axis))
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0)


class Steps:
    """Compiled step functions for one network, optimizer and feedback layout."""

    def __init__(self, net: Network, optimizer: optax.GradientTransformation,
                 scales: Sequence[float]) -> None:
        self.net = net
        self.opt = optimizer
        self.slices = tuple(feedback_slices(net.hidden_sizes))
        self.scales = tuple(float(s) for s in scales)
        self.bp_step = jax.jit(self._bp_step)
        self.forward_error = jax.jit(self._forward_error)
        self.dfa_step = jax.jit(partial(self._dfa_step, learn_hidden=True))
        self.shallow_step = jax.jit(partial(self._dfa_step, learn_hidden=False))
        self.dfa_step_private = jax.jit(self._dfa_step_private)  # [privacy seam]
        self.alignment = jax.jit(self._alignment)
        self.evaluate = jax.jit(self._evaluate)

    # ---------------------------------------------------------------- pieces
    def _bp_step(self, params, opt_state, x, y):
        def loss_fn(p):
            logits = self.net.logits(p, x)
            return _loss(logits, y), logits

        (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = self.opt.update(grads, opt_state, params)
        correct = jnp.sum(jnp.argmax(logits, -1) == y)
        return optax.apply_updates(params, updates), opt_state, loss, correct

    def _forward_error(self, params, x, y):
        """(loss, correct, e (b, C), hidden inputs, pre-activations)."""
        logits, inputs, pre = self.net.forward(params, x)
        e = jax.nn.softmax(logits) - jax.nn.one_hot(y, logits.shape[-1])
        correct = jnp.sum(jnp.argmax(logits, -1) == y)
        return _loss(logits, y), correct, e, inputs, pre

    def _hidden_deltas(self, pre, feedback, batch):
        """DFA signals dL/da_l (b, d_l) from the feedback (b, m)."""
        deltas = []
        for a, (lo, hi), s in zip(pre, self.slices, self.scales, strict=True):
            f = feedback[:, lo:hi] * (s / batch)
            _, act_vjp = jax.vjp(self.net.act, a)  # elementwise: f * act'(a)
            deltas.append(act_vjp(f)[0])
        return deltas

    def _layer_grads(self, params, inputs, deltas):
        grads = []
        for layer, p, h, d in zip(self.net.hidden, params[:-1], inputs[:-1], deltas, strict=True):
            _, vjp = jax.vjp(lambda q, h=h, layer=layer: layer.apply(q, h), p)
            grads.append(vjp(d)[0])
        return grads

    def _top_grad(self, params, inputs, y):
        h = jax.lax.stop_gradient(inputs[-1])
        return jax.grad(lambda p: _loss(self.net.output.apply(p, h), y))(params[-1])

    def _dfa_step(self, params, opt_state, x, y, feedback, inputs, pre, *, learn_hidden: bool):
        top = self._top_grad(params, inputs, y)
        if learn_hidden:
            hidden = self._layer_grads(params, inputs, self._hidden_deltas(pre, feedback, x.shape[0]))
        else:
            hidden = [jax.tree_util.tree_map(jnp.zeros_like, p) for p in params[:-1]]
        grads = [*hidden, top]
        updates, opt_state = self.opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    def _dfa_step_private(self, params, opt_state, x, feedback, top_error, inputs, pre):
        """[privacy seam] DFA step whose output layer also learns from a noisy error (b, C) instead of
        its true gradient (host/privacy: the top layer's error is part of the mechanism)."""
        b = x.shape[0]
        h = jax.lax.stop_gradient(inputs[-1])
        _, vjp = jax.vjp(lambda p: self.net.output.apply(p, h), params[-1])
        top = vjp(top_error / b)[0]
        hidden = self._layer_grads(params, inputs, self._hidden_deltas(pre, feedback, b))
        updates, opt_state = self.opt.update([*hidden, top], opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    def _alignment(self, params, x, y, feedback):
        """Per hidden layer: cosine of the DFA update and the BP gradient of its parameters (L-1,),
        and mean / std over samples of the cosine of dL/da_l (BP) and the DFA signal (L-1,) each.
        """
        _logits, inputs, pre = self.net.forward(params, x)

        def loss_from_pre(eps):  # BP's dL/da_l: gradient w.r.t. an additive 0 on each a_l
            h = x
            for layer, p, e_l in zip(self.net.hidden, params[:-1], eps, strict=True):
                h = self.net.act(layer.apply(p, h) + e_l)
            return _loss(self.net.output.apply(params[-1], h), y)

        bp_deltas = jax.grad(loss_from_pre)([jnp.zeros_like(a) for a in pre])
        dfa_deltas = self._hidden_deltas(pre, feedback, x.shape[0])
        bp_grads = self._layer_grads(params, inputs, bp_deltas)
        dfa_grads = self._layer_grads(params, inputs, dfa_deltas)
        flat = lambda t: jnp.concatenate([v.ravel() for v in jax.tree_util.tree_leaves(t)])  # noqa: E731
        cos_update = jnp.stack([_cosine(flat(g), flat(d)) for g, d in zip(bp_grads, dfa_grads, strict=True)])
        per_sample = [_cosine(g, d, axis=1) for g, d in zip(bp_deltas, dfa_deltas, strict=True)]
        return cos_update, jnp.stack([c.mean() for c in per_sample]), jnp.stack([c.std() for c in per_sample])

    def _evaluate(self, params, x, y):
        """(summed loss, number correct) over the batch."""
        logits = self.net.logits(params, x)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).sum()
        return loss, jnp.sum(jnp.argmax(logits, -1) == y)
