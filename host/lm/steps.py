"""Jitted pieces of a language-model training step (shapes: tokens (b, T+1) int32).

The loss is the mean next-token cross-entropy over the b·T positions, so the true gradient of the
head carries 1/(bT) and so does each block's DFA signal::

    δ_i(token) = s · F_i(token) / (bT)        F_i: block i's d_model slice of the projection of e(token)

where e(token) = softmax(logits) − onehot(next byte) ∈ R^V and s the feedback normalization
(1/√V with ``fan_in``). The signal enters at block i's output through a feedback point
(:func:`inject`, a ``jax.custom_vjp``): its backward discards the cotangent from above and emits δ_i,
and autodiff carries δ_i into block i's own parameters; the embedding learns from block 0's signal.
The device call happens between :meth:`LMSteps.forward_error` and :meth:`LMSteps.dfa_step`,
outside ``jit``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from . import model as tf


@jax.custom_vjp
def inject(a: jnp.ndarray, signal: jnp.ndarray) -> jnp.ndarray:
    """Identity forward; backward returns ``signal`` (shape of ``a``) as the cotangent of ``a``."""
    return a


def _inject_fwd(a, signal):
    return a, signal


def _inject_bwd(signal, g):
    return signal.astype(g.dtype), jnp.zeros_like(signal)


inject.defvjp(_inject_fwd, _inject_bwd)


def _cosine(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    num = jnp.sum(a * b)
    den = jnp.sqrt(jnp.sum(a * a) * jnp.sum(b * b))
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0)


def _flat(tree) -> jnp.ndarray:
    return jnp.concatenate([v.ravel() for v in jax.tree_util.tree_leaves(tree)])


class LMSteps:
    """Compiled step functions for one Transformer shape, optimizer and feedback scale."""

    def __init__(self, cfg: tf.TransformerConfig, optimizer: optax.GradientTransformation,
                 feedback_scale: float, shared_feedback: bool = False) -> None:
        self.cfg = cfg
        self.shared = bool(shared_feedback)
        self.opt = optimizer
        self.scale = float(feedback_scale)
        self.bp_step = jax.jit(self._bp_step)
        self.forward_error = jax.jit(self._forward_error)
        self.dfa_step = jax.jit(self._dfa_step)
        self.shallow_step = jax.jit(self._shallow_step)
        self.alignment = jax.jit(self._alignment)
        self.eval_nll = jax.jit(self._eval_nll)

    @property
    def n_feedback(self) -> int:
        """Feedback outputs per token: one d_model slice per block (one for all blocks when shared)."""
        return self.cfg.d_model if self.shared else self.cfg.n_blocks * self.cfg.d_model

    # ------------------------------------------------------------------ losses
    def _loss(self, params, tokens, point=None):
        x, y = tokens[:, :-1], tokens[:, 1:]
        logit = tf.logits(params, x, self.cfg, point) if point else tf.logits(params, x, self.cfg)
        return tf.token_nll(logit, y).mean(), logit

    def _dfa_point(self, feedback, n_tokens):
        """A point that injects block i's slice of ``feedback`` (b, T, L·d), scaled by s/(bT)."""
        d = self.cfg.d_model
        names = self.cfg.point_names

        def point(a, name):
            i = 0 if self.shared else names.index(name)
            sig = feedback[..., i * d : (i + 1) * d] * (self.scale / n_tokens)
            if sig.shape != a.shape:
                raise ValueError(f"feedback point {name!r}: signal {sig.shape} != activation {a.shape}")
            return inject(a, sig)

        return point

    # ------------------------------------------------------------------ steps
    def _bp_step(self, params, opt_state, tokens):
        (loss, _), grads = jax.value_and_grad(self._loss, has_aux=True)(params, tokens)
        updates, opt_state = self.opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    def _forward_error(self, params, tokens):
        """(loss, e (b·T, V) float32): per-token output errors, row-major over (sample, position)."""
        loss, logit = self._loss(params, tokens)
        e = jax.nn.softmax(logit) - jax.nn.one_hot(tokens[:, 1:], logit.shape[-1])
        return loss, e.reshape(-1, e.shape[-1])

    def _dfa_grads(self, params, tokens, feedback):
        b, t = tokens.shape[0], tokens.shape[1] - 1
        fb = feedback.reshape(b, t, -1)
        point = self._dfa_point(fb, b * t)
        return jax.grad(lambda p: self._loss(p, tokens, point)[0])(params)

    def _dfa_step(self, params, opt_state, tokens, feedback):
        grads = self._dfa_grads(params, tokens, feedback)
        updates, opt_state = self.opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    def _shallow_step(self, params, opt_state, tokens):
        """Only the unembedding learns (the blocks stay at their random initialization)."""
        grads = jax.grad(lambda p: self._loss(p, tokens)[0])(params)
        grads = jax.tree_util.tree_map(jnp.zeros_like, grads) | {"unembed": grads["unembed"]}
        updates, opt_state = self.opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    def _alignment(self, params, tokens, feedback):
        """Per block: cosine of the DFA update and the BP gradient of that block's parameters (L,)."""
        bp = jax.grad(lambda p: self._loss(p, tokens)[0])(params)
        dfa = self._dfa_grads(params, tokens, feedback)
        return jnp.stack([_cosine(_flat(g), _flat(d)) for g, d in zip(bp["blocks"], dfa["blocks"],
                                                                       strict=True)])

    def _eval_nll(self, params, tokens):
        """Summed next-token NLL in nats over the windows (b, T+1) and per-position NLL (b, T)."""
        x, y = tokens[:, :-1], tokens[:, 1:]
        nll = tf.token_nll(tf.logits(params, x, self.cfg), y)
        return nll.sum(), nll


def fan_in_scale(normalization: str, vocab: int, d_model: int) -> float:
    """Feedback normalization (as :func:`host.train.feedback.layer_scales`): 1/√V, 1/√d or 1."""
    if normalization == "fan_in":
        return 1.0 / math.sqrt(vocab)
    if normalization == "fan_out":
        return 1.0 / math.sqrt(d_model)
    return 1.0


__all__ = ["LMSteps", "fan_in_scale", "inject"]
