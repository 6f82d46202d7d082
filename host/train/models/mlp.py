"""Fully connected network: hidden layers ``h_l = f(h_{l-1} W_l + b_l)``, each followed by a feedback point.

Shapes: x (b, d) float32 -> logits (b, C). Points ``"dense1"``, ``"dense2"``, ... sit after each hidden
activation (feedback size d_l per sample); the output layer gets its true gradient.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import jax
import jax.numpy as jnp

from ..pfa import linear
from ..points import feedback_point

Params = Any  # a pytree of jnp arrays

ACTIVATIONS: dict[str, Callable[[jnp.ndarray], jnp.ndarray]] = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
}


class Layer(Protocol):
    """One trainable map ``h (b, in) -> a (b, out)`` (pre-activation); ``name`` labels it (PFA)."""

    out_features: int

    def init(self, key: jax.Array, in_features: int) -> Params: ...

    def apply(self, params: Params, h: jnp.ndarray, name: str) -> jnp.ndarray: ...


@dataclass(frozen=True)
class Dense:
    """Fully connected layer ``a = h W + b``; W (in, out) float32, LeCun-normal init, b = 0."""

    out_features: int

    def init(self, key: jax.Array, in_features: int) -> Params:
        w = jax.random.normal(key, (in_features, self.out_features), jnp.float32) / jnp.sqrt(in_features)
        return {"w": w, "b": jnp.zeros((self.out_features,), jnp.float32)}

    def apply(self, params: Params, h: jnp.ndarray, name: str = "dense") -> jnp.ndarray:
        """``h W + b``; ``name`` labels the weight for PFA (:func:`host.train.pfa.linear`)."""
        return linear(jnp.matmul, h, params["w"], name) + params["b"]


@dataclass(frozen=True)
class Network:
    """Hidden layers (each followed by ``activation`` and a feedback point) and a linear output layer."""

    hidden: tuple[Layer, ...]
    output: Layer
    activation: str = "tanh"

    @property
    def act(self) -> Callable[[jnp.ndarray], jnp.ndarray]:
        return ACTIVATIONS[self.activation]

    @property
    def layers(self) -> tuple[Layer, ...]:
        return (*self.hidden, self.output)

    def init(self, key: jax.Array, inputs: int | jnp.ndarray) -> list[Params]:
        """Parameters for inputs with ``inputs`` features (an int, or an example batch (b, d))."""
        d = inputs if isinstance(inputs, int) else int(inputs.shape[-1])
        keys = jax.random.split(key, len(self.layers))
        params = []
        for k, layer in zip(keys, self.layers, strict=True):
            params.append(layer.init(k, d))
            d = layer.out_features
        return params

    def apply(self, params: Sequence[Params], x: jnp.ndarray) -> jnp.ndarray:
        """Logits (b, C) of x (b, d)."""
        h = x
        for i, (layer, p) in enumerate(zip(self.hidden, params[:-1], strict=True)):
            h = feedback_point(self.act(layer.apply(p, h, f"dense{i + 1}")), f"dense{i + 1}")
        return self.output.apply(params[-1], h, "out")


def mlp(hidden: Sequence[int], n_classes: int, activation: str = "tanh") -> Network:
    """MLP with the given hidden widths (e.g. (256, 256)) and ``n_classes`` outputs."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}")
    if not hidden or any(int(w) < 1 for w in hidden):
        raise ValueError(f"hidden widths must be a non-empty list of integers >= 1, got {list(hidden)}")
    return Network(tuple(Dense(int(w)) for w in hidden), Dense(int(n_classes)), activation)
