"""Jitted pieces of a training step for any model with feedback points: BP, DFA, alignment, evaluation.

A batch is ``(inputs, y, w)``: the model's inputs (a pytree: x (b, d) for images, (x, graph) for
graphs), labels y (*lead,) int32 and per-sample weights w (*lead,) float32 (1 for a minibatch, the
train mask for a full-batch graph). The loss is the weighted mean cross-entropy
``L = sum_i w_i CE_i / W`` with ``W = sum_i w_i``, so ``dL/dlogits_i = e_i / W`` with the output error

    e_i = w_i (softmax(logits_i) - onehot(y_i))                 (*lead, C)

DFA (reference section 4.1): the one global projection F = e A^T (*lead, m) is split across the
feedback points; point l receives ``s_l F_l / W`` (reshaped to its activation) in place of BP's
dL/dh_l and autodiff carries it to the block's parameters (through f' and the block's linear map).
Without the device (``dfa``) or with it (``optical-dfa``), the step is: :meth:`Steps.forward_error`
(jitted; returns e and the VJP of the tapped forward pass), the projection on the host, then
:meth:`Steps.dfa_step` (jitted; the VJP with the logits' cotangent e / W and the split feedback on the
taps, and the optax update). The forward pass is not recomputed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from .points import PointLayout, perturbing, tapping


class Batch(NamedTuple):
    """Model inputs (pytree), labels y (*lead,) int32, sample weights w (*lead,) float32."""

    inputs: Any
    y: jnp.ndarray
    w: jnp.ndarray


def _ce(logits: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
    return optax.softmax_cross_entropy_with_integer_labels(logits, y)


def weighted_loss(logits: jnp.ndarray, y: jnp.ndarray, w: jnp.ndarray) -> jnp.ndarray:
    """sum_i w_i CE(logits_i, y_i) / sum_i w_i."""
    return jnp.sum(w * _ce(logits, y)) / jnp.sum(w)


def cosine(a: jnp.ndarray, b: jnp.ndarray, axis=None) -> jnp.ndarray:
    num = jnp.sum(a * b, axis=axis)
    den = jnp.sqrt(jnp.sum(a * a, axis=axis) * jnp.sum(b * b, axis=axis))
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0)


def _flat(tree) -> jnp.ndarray:
    return jnp.concatenate([v.ravel() for v in jax.tree_util.tree_leaves(tree)])


class Steps:
    """Compiled step functions for one model (``apply(params, inputs) -> logits``), optimizer and layout.

    ``layout`` (None for ``bp``) lists the feedback points; ``scales`` the factor s_l of each point.
    """

    def __init__(self, apply: Callable[[Any, Any], jnp.ndarray], optimizer: optax.GradientTransformation,
                 layout: PointLayout | None = None, scales: Sequence[float] = ()) -> None:
        self.apply = apply
        self.opt = optimizer
        self.layout = layout
        self.scales = tuple(float(s) for s in scales)
        if layout is not None and len(self.scales) != len(layout.points):
            raise ValueError(f"{len(self.scales)} scales for {len(layout.points)} feedback points")
        self.bp_step = jax.jit(self._bp_step)
        self.forward_error = jax.jit(self._forward_error)
        self.dfa_step = jax.jit(self._dfa_step)
        self.shallow_step = jax.jit(lambda p, s, vjp, e, wsum: self._dfa_step(p, s, vjp, e, wsum, None))
        self.dfa_step_private = jax.jit(self._dfa_step_private)  # [privacy seam]
        self.alignment = jax.jit(self._alignment)
        self.evaluate = jax.jit(self._evaluate)

    # ---------------------------------------------------------------- pieces
    def _bp_step(self, params, opt_state, batch: Batch):
        def loss_fn(p):
            logits = self.apply(p, batch.inputs)
            return weighted_loss(logits, batch.y, batch.w), logits

        (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = self.opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, self._correct(logits, batch)

    @staticmethod
    def _correct(logits, batch: Batch) -> jnp.ndarray:
        return jnp.sum(batch.w * (jnp.argmax(logits, -1) == batch.y))

    def _tapped(self, params, inputs):
        """(logits, {point: activation}) with BP cut at every point."""
        with tapping() as scope:
            logits = self.apply(params, inputs)
        return logits, dict(scope.taps)

    def _forward_error(self, params, batch: Batch):
        """(loss, correct, e (*lead, C), W = sum w, vjp of the tapped forward pass)."""
        (logits, _taps), vjp = jax.vjp(lambda p: self._tapped(p, batch.inputs), params)
        e = batch.w[..., None] * (jax.nn.softmax(logits) - jax.nn.one_hot(batch.y, logits.shape[-1]))
        return weighted_loss(logits, batch.y, batch.w), self._correct(logits, batch), e, jnp.sum(batch.w), vjp

    def point_signals(self, feedback: jnp.ndarray, wsum) -> dict[str, jnp.ndarray]:
        """DFA signal of each point: s_l F_l / W, shaped like its activation."""
        parts = self.layout.split(feedback)
        return {n: parts[n] * (s / wsum) for n, s in zip(self.layout.names, self.scales, strict=True)}

    def _dfa_grads(self, vjp, e, wsum, feedback):
        names = self.layout.names
        if feedback is None:  # shallow: no signal below the output layer
            lead = e.shape[:-1]
            taps = {p.name: jnp.zeros((*lead, *p.shape), e.dtype) for p in self.layout.points}
        else:
            taps = self.point_signals(feedback, wsum)
        taps = {n: taps[n] for n in names}
        return vjp((e / wsum, taps))[0]

    def _dfa_step(self, params, opt_state, vjp, e, wsum, feedback):
        grads = self._dfa_grads(vjp, e, wsum, feedback)
        updates, opt_state = self.opt.update(grads, opt_state, params)
        if feedback is None:  # shallow: what gets no gradient stays as it is (no weight decay either)
            updates = jax.tree_util.tree_map(lambda u, g: jnp.where(jnp.any(g != 0), u, 0.0), updates, grads)
        return optax.apply_updates(params, updates), opt_state

    def _dfa_step_private(self, params, opt_state, vjp, top_error, wsum, feedback):
        """[privacy seam] DFA step whose output layer learns from a noisy error ``top_error`` (*lead, C)
        in place of e (host/privacy: the output layer's error is part of the released vector). The cut at
        the points keeps the logits' cotangent above the last point, so only the output layer sees it;
        the points get the (noisy) feedback exactly as in :meth:`_dfa_step`."""
        return self._dfa_step(params, opt_state, vjp, top_error, wsum, feedback)

    def _alignment(self, params, batch: Batch, feedback):
        """Per point: cosine of the DFA update and the BP gradient of the block's parameters (P,), and
        mean / std over samples (w > 0) of the cosine of BP's dL/dh and the DFA signal at the point (P,).
        """
        layout = self.layout
        (logits, taps), vjp = jax.vjp(lambda p: self._tapped(p, batch.inputs), params)

        def loss_from_eps(eps):
            with perturbing(eps):
                return weighted_loss(self.apply(params, batch.inputs), batch.y, batch.w)

        bp = jax.grad(loss_from_eps)({n: jnp.zeros_like(a) for n, a in taps.items()})
        wsum = jnp.sum(batch.w)
        dfa = self.point_signals(feedback, wsum)
        zero_logits = jnp.zeros_like(logits)
        zeros = {n: jnp.zeros_like(a) for n, a in taps.items()}
        cu, cm, cs = [], [], []
        lead = batch.w.shape
        keep = (batch.w > 0).reshape(-1).astype(jnp.float32)
        for n in layout.names:  # gradient of the block below point n only (the cut stops it there)
            g_bp = vjp((zero_logits, {**zeros, n: bp[n]}))[0]
            g_dfa = vjp((zero_logits, {**zeros, n: dfa[n]}))[0]
            cu.append(cosine(_flat(g_bp), _flat(g_dfa)))
            per = cosine(bp[n].reshape(*lead, -1).reshape(keep.shape[0], -1),
                         dfa[n].reshape(keep.shape[0], -1), axis=1)
            mean = jnp.sum(keep * per) / jnp.sum(keep)
            cm.append(mean)
            cs.append(jnp.sqrt(jnp.sum(keep * (per - mean) ** 2) / jnp.sum(keep)))
        return jnp.stack(cu), jnp.stack(cm), jnp.stack(cs)

    def _evaluate(self, params, batch: Batch):
        """(weighted summed loss, weighted number correct, W) over the batch."""
        logits = self.apply(params, batch.inputs)
        return jnp.sum(batch.w * _ce(logits, batch.y)), self._correct(logits, batch), jnp.sum(batch.w)
