"""Product Feedback Alignment (Li & Benna 2024, arXiv 2405.20594): a digital, layer-wise baseline.

Every trainable linear map of a model (a dense layer ``y = x W`` with W (N_in, N_out), or a convolution
with kernel (kh, kw, C_in, C_out), seen as W (kh kw C_in, C_out) acting on image patches) gets a
fixed random ``B`` (N_out, k N_out), entries N(0, 1 / (k N_out)) so that ``B B^T ~ I``, and a learned
``R`` (k N_out, N_in). The backward pass sends the error below the layer through ``B R`` instead of
``W^T``::

    delta_in = (delta_out B) R                 (BP: delta_out W^T)
    grad W   = x^T delta_out                   (the layer's own, local gradient, as BP)
    R       <- R - lr_R (B^T grad_W^T + lambda R)

so ``B R`` accumulates ``B B^T`` times the weight updates and comes to point along ``W^T`` (the *path
alignment* cos(W^T, B R) reported per layer), while the weight decay removes R's random start.
The output layer is treated like the others (its delta_out is the output error); the first layer's
``B R`` would only send an error to the input, so it has none.

Model code names its linear maps with :func:`linear`; outside a PFA scope it is the plain op.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

_SCOPE: contextvars.ContextVar[dict | None] = contextvars.ContextVar("pfa_scope", default=None)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _pfa(op: Callable, x: jnp.ndarray, w: jnp.ndarray, wb: jnp.ndarray) -> jnp.ndarray:
    return op(x, w)


def _pfa_fwd(op, x, w, wb):
    return op(x, w), (x, w, wb)


def _pfa_bwd(op, res, g):
    x, w, wb = res
    _, vjp_w = jax.vjp(lambda w_: op(x, w_), w)
    _, vjp_x = jax.vjp(lambda x_: op(x_, wb), x)  # the error goes down through B R, not W
    return vjp_x(g)[0], vjp_w(g)[0], jnp.zeros_like(wb)


_pfa.defvjp(_pfa_fwd, _pfa_bwd)


def linear(
    op: Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray], x: jnp.ndarray, w: jnp.ndarray, name: str
) -> jnp.ndarray:
    """``op(x, w)`` (a map linear in x and in w); inside :func:`backward_weights` its input gradient uses
    the scope's weight for ``name`` instead of ``w``; while discovering it records ``(name, w)``."""
    scope = _SCOPE.get()
    if scope is None:
        return op(x, w)
    if scope.get("__record__") is not None:
        scope["__record__"].append((name, w))
        return op(x, w)
    dw = scope["dw"].get(name)  # a zero probe whose gradient is the weight gradient of this use
    w = w if dw is None else w + dw
    wb = scope["wb"].get(name)
    return op(x, w) if wb is None else _pfa(op, x, w, wb)


@contextlib.contextmanager
def backward_weights(
    weights: dict[str, jnp.ndarray], probes: dict[str, jnp.ndarray] | None = None
) -> Iterator[None]:
    """Scope: the input gradient of linear map ``name`` goes through ``weights[name]`` (shape of its w);
    ``probes[name]`` (zeros shaped like w) is added to w, so its gradient is the weight gradient."""
    token = _SCOPE.set({"wb": dict(weights), "dw": dict(probes or {})})
    try:
        yield
    finally:
        _SCOPE.reset(token)


def discover_linears(apply: Callable[..., Any], *args: Any) -> list[tuple[str, tuple[int, ...]]]:
    """(name, weight shape) of every :func:`linear` call of ``apply(*args)``, in call order (no compute)."""
    rec: list = []

    def traced(*a):
        token = _SCOPE.set({"__record__": rec})
        try:
            return apply(*a)
        finally:
            _SCOPE.reset(token)

    jax.eval_shape(traced, *args)
    return [(n, tuple(int(d) for d in w.shape)) for n, w in rec]


def _weights(apply: Callable, params, inputs) -> dict[str, jnp.ndarray]:
    """{name: forward weight} of the linear maps (traced inside the caller's jit)."""
    rec: list = []
    token = _SCOPE.set({"__record__": rec})
    try:
        apply(params, inputs)
    finally:
        _SCOPE.reset(token)
    return dict(rec)


def _dims(shape: tuple[int, ...]) -> tuple[int, int]:
    """(N_in, N_out) of a weight: the last axis is the output, the others the (patch) input."""
    return math.prod(shape[:-1]), shape[-1]


def init_pfa(key: jax.Array, linears: list[tuple[str, tuple[int, ...]]], k: int = 10) -> tuple[dict, dict]:
    """(fixed B per layer, initial R per layer) for all linear maps but the first.

    B (N_out, k N_out) ~ N(0, 1/(k N_out)); R (k N_out, N_in) ~ N(0, 1/N_in) (a random backward path
    at the start, as feedback alignment's)."""
    bs, rs = {}, {}
    for i, (name, shape) in enumerate(linears[1:]):
        n_in, n_out = _dims(shape)
        kb, kr = jax.random.split(jax.random.fold_in(key, i))
        bs[name] = jax.random.normal(kb, (n_out, k * n_out), jnp.float32) / math.sqrt(k * n_out)
        rs[name] = jax.random.normal(kr, (k * n_out, n_in), jnp.float32) / math.sqrt(n_in)
    return bs, rs


def backward_weight(b: jnp.ndarray, r: jnp.ndarray, shape: tuple[int, ...]) -> jnp.ndarray:
    """(B R)^T reshaped like the forward weight (the matrix the error goes down through)."""
    return (b @ r).T.reshape(shape)


def r_gradient(b: jnp.ndarray, r: jnp.ndarray, grad_w: jnp.ndarray, decay: float) -> jnp.ndarray:
    """B^T grad_W^T + lambda R: the update direction of R (grad_W flattened to (N_in, N_out))."""
    n_in, n_out = _dims(grad_w.shape)
    return b.T @ grad_w.reshape(n_in, n_out).T + decay * r


def path_alignment(b: jnp.ndarray, r: jnp.ndarray, w: jnp.ndarray) -> jnp.ndarray:
    """cos(W^T, B R): 1 when the backward path is the transposed forward weight."""
    n_in, n_out = _dims(w.shape)
    wt, br = w.reshape(n_in, n_out).T, b @ r
    return jnp.sum(wt * br) / jnp.sqrt(jnp.sum(wt * wt) * jnp.sum(br * br))


class PFASteps:
    """Jitted PFA training step and alignment for a model (``apply``) with named :func:`linear` maps.

    ``aux`` (the trainer's extra state, checkpointed): ``{"r": {name: R}, "opt": optimizer state of R}``;
    B is fixed and rebuilt from the run's feedback key.
    """

    def __init__(
        self,
        apply: Callable,
        optimizer,
        linears: list[tuple[str, tuple[int, ...]]],
        key: jax.Array,
        k: int = 10,
        decay: float = 1e-3,
    ) -> None:
        import optax  # noqa: F401 (optax transformations only)

        self.apply = apply
        self.opt = optimizer
        self.shapes = dict(linears)
        self.first = linears[0][0]
        self.b, r0 = init_pfa(key, linears, k)
        self.r0 = r0
        self.decay = float(decay)
        self.step = jax.jit(self._step)
        self.alignment = jax.jit(self._alignment)

    def init_aux(self) -> dict:
        return {"r": self.r0, "opt": self.opt.init(self.r0)}

    def _grads(self, params, r, batch, backward: bool = True):
        from .steps import weighted_loss

        wb = {n: backward_weight(self.b[n], r[n], self.shapes[n]) for n in r} if backward else {}
        probes = {n: jnp.zeros(s, jnp.float32) for n, s in self.shapes.items()}

        def loss_fn(p, dw):
            with backward_weights(wb, dw):
                logits = self.apply(p, batch.inputs)
            return weighted_loss(logits, batch.y, batch.w), logits

        (loss, logits), (grads, gw) = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(
            params, probes
        )
        return loss, logits, grads, gw

    def _step(self, params, opt_state, aux, batch):
        import optax

        loss, logits, grads, gw = self._grads(params, aux["r"], batch)
        updates, opt_state = self.opt.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        g_r = {n: r_gradient(self.b[n], aux["r"][n], gw[n], self.decay) for n in aux["r"]}
        r_updates, r_opt = self.opt.update(g_r, aux["opt"], aux["r"])
        aux = {"r": optax.apply_updates(aux["r"], r_updates), "opt": r_opt}
        correct = jnp.sum(batch.w * (jnp.argmax(logits, -1) == batch.y))
        return params, opt_state, aux, loss, correct

    def _alignment(self, params, aux, batch):
        """Per linear map (call order): cos(PFA weight gradient, BP weight gradient) (n,), and the path
        alignment cos(W^T, B R) (n,; NaN for the first map, which has no backward path)."""
        weights = _weights(self.apply, params, batch.inputs)
        _, _, _, g_pfa = self._grads(params, aux["r"], batch)
        _, _, _, g_bp = self._grads(params, aux["r"], batch, backward=False)
        cos_update = jnp.stack([_cos(g_pfa[n], g_bp[n]) for n in self.shapes])
        path = jnp.stack(
            [
                path_alignment(self.b[n], aux["r"][n], weights[n]) if n in aux["r"] else jnp.nan
                for n in self.shapes
            ]
        )
        return cos_update, path


def _cos(a, b):
    den = jnp.sqrt(jnp.sum(a * a) * jnp.sum(b * b))
    return jnp.where(den > 0, jnp.sum(a * b) / jnp.where(den > 0, den, 1.0), 0.0)
