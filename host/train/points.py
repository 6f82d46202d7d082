"""Feedback points: where the DFA signal enters any JAX model.

Model code marks a point with one line, after a block's nonlinearity::

    h = feedback_point(jax.nn.relu(conv(params, x)), "conv1")

Outside a scope (``bp`` training, evaluation) the point is the identity, so ``bp`` through points is
plain autodiff. Inside a scope opened while a step is traced, the point does one of three things:

* :func:`recording` (under ``jax.eval_shape``): record the point's name and per-sample shape, so the
  trainer knows the points, their sizes and the total projection size m (the camera ROI) before the
  first step (:func:`discover_points`).
* :func:`tapping`: the DFA cut. The point (a ``jax.custom_vjp``) returns its input and also hands a
  copy of it (the *tap*) to the scope; the traced function returns the taps next to the logits. The
  point's backward ignores the cotangent arriving from the layers above (dead code under ``jit``) and
  passes down the cotangent given to its tap: the trainer gives each tap its slice of the one global
  projection ``B e``, and ordinary autodiff carries it to the block's own parameters (applying f'
  itself, since the point sits after the nonlinearity) and stops at the next point below.
* :func:`perturbing`: ``a + eps[name]``, whose gradient w.r.t. ``eps`` is BP's dL/da at the point (the
  reference signal of the alignment measurement).

Scopes are read at trace time: jit the whole step (as :mod:`host.train.steps` does), not model code
inside it. Shapes: a point's activation is ``(*lead, *shape)`` where ``lead`` are the per-sample axes
of the output error (``(b,)`` for images, ``(n_nodes,)`` for graphs, ``(b, T)`` for tokens); its
feedback size is ``prod(shape)``.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp


class FeedbackPointError(ValueError):
    """Feedback points and feedback do not fit (no point, duplicate name, size mismatch)."""


@dataclass(frozen=True)
class PointSpec:
    """One feedback point: its name and per-sample activation shape (feedback size = prod(shape))."""

    name: str
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class PointLayout:
    """The points of a model in call order and their column ranges in the global projection (*lead, m)."""

    points: tuple[PointSpec, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.points)

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(p.size for p in self.points)

    @property
    def total(self) -> int:
        """m: outputs per sample of the one projection (camera pixels of the optical feedback)."""
        return sum(self.sizes)

    def slices(self) -> dict[str, tuple[int, int]]:
        out, lo = {}, 0
        for p in self.points:
            out[p.name] = (lo, lo + p.size)
            lo += p.size
        return out

    def split(self, feedback: jnp.ndarray) -> dict[str, jnp.ndarray]:
        """Split a projection (*lead, m) into ``{name: (*lead, *shape)}``."""
        if feedback.shape[-1] != self.total:
            raise FeedbackPointError(
                f"feedback has {feedback.shape[-1]} values per sample, the feedback points "
                f"{', '.join(f'{p.name}{p.shape}' for p in self.points)} need {self.total}")
        lead = feedback.shape[:-1]
        return {p.name: feedback[..., lo:hi].reshape(*lead, *p.shape)
                for p, (lo, hi) in zip(self.points, self.slices().values(), strict=True)}

    def as_dict(self) -> list[dict]:
        return [{"name": p.name, "shape": list(p.shape), "size": p.size} for p in self.points]


# ------------------------------------------------------------------------------------------- scopes
@dataclass
class _Scope:
    kind: str  # "record" | "tap" | "perturb"
    lead_ndim: int = 1
    taps: dict[str, Any] = field(default_factory=dict)
    records: list[PointSpec] = field(default_factory=list)
    eps: dict[str, Any] | None = None


_SCOPE: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar("feedback_point_scope", default=None)


@contextlib.contextmanager
def _open(scope: _Scope) -> Iterator[_Scope]:
    token = _SCOPE.set(scope)
    try:
        yield scope
    finally:
        _SCOPE.reset(token)


def recording(lead_ndim: int = 1) -> contextlib.AbstractContextManager[_Scope]:
    """Scope that records each point's name and per-sample shape (``scope.records``)."""
    return _open(_Scope("record", lead_ndim))


def tapping() -> contextlib.AbstractContextManager[_Scope]:
    """Scope that cuts BP at every point and exposes its activation as ``scope.taps[name]``."""
    return _open(_Scope("tap"))


def perturbing(eps: dict[str, Any]) -> contextlib.AbstractContextManager[_Scope]:
    """Scope that adds ``eps[name]`` to each point's activation (gradient w.r.t. eps = BP's dL/da)."""
    return _open(_Scope("perturb", eps=eps))


@jax.custom_vjp
def _tap(a: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    return a, a


def _tap_fwd(a):
    return (a, a), None


def _tap_bwd(_, cotangents):
    _from_above, from_tap = cotangents  # the cotangent from the layers above is discarded
    return (from_tap,)


_tap.defvjp(_tap_fwd, _tap_bwd)


def feedback_point(a: jnp.ndarray, name: str) -> jnp.ndarray:
    """Mark where the DFA signal enters: identity outside a scope; see the module docstring.

    ``a``: the block's activation (after its nonlinearity), shape ``(*lead, *shape)``.
    """
    scope = _SCOPE.get()
    if scope is None:
        return a
    if scope.kind == "record":
        if any(p.name == name for p in scope.records):
            raise FeedbackPointError(f"feedback point {name!r} is used twice; names must be unique")
        shape = tuple(int(d) for d in a.shape[scope.lead_ndim:])
        scope.records.append(PointSpec(name, shape))
        return a
    if scope.kind == "tap":
        if name in scope.taps:
            raise FeedbackPointError(f"feedback point {name!r} is used twice; names must be unique")
        out, tap = _tap(a)
        scope.taps[name] = tap
        return out
    if name not in scope.eps:  # perturb
        raise FeedbackPointError(f"no perturbation for feedback point {name!r}; known: {sorted(scope.eps)}")
    return a + scope.eps[name]


def discover_points(apply: Callable[..., Any], *args: Any, lead_ndim: int = 1,
                    require: bool = True) -> PointLayout:
    """Trace ``apply(*args)`` once under ``jax.eval_shape`` and return its feedback points.

    Nothing is computed. ``require``: raise :class:`FeedbackPointError` when the model has no point
    (a DFA mode has nowhere to send its feedback).
    """
    records: list[PointSpec] = []

    def traced(*a):
        with recording(lead_ndim) as scope:
            out = apply(*a)
        records.extend(scope.records)
        return out

    jax.eval_shape(traced, *args)
    if require and not records:
        raise FeedbackPointError(
            "the model has no feedback point: DFA modes need at least one "
            "`feedback_point(activation, name)` in the model (host/train/points.py); use --mode bp otherwise")
    for p in records:
        if p.size == 0:
            raise FeedbackPointError(f"feedback point {p.name!r} has an empty per-sample shape {p.shape}")
    return PointLayout(tuple(records))
