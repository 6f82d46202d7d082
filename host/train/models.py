"""Models as a stack of layers, each ``h_{l-1} -> a_l`` followed by an activation.

DFA needs each hidden layer's pre-activation ``a_l`` and the local map ``theta_l -> a_l`` (to turn a
feedback signal ``delta_l = dL/da_l`` into parameter gradients with one ``jax.vjp``), so a layer is
anything following :class:`Layer`: ``init`` and ``apply``. :class:`Dense` is the one shipped; a
convolution or graph convolution plugs in the same way (its feedback size is the flattened size of
its output).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import jax
import jax.numpy as jnp

Params = Any  # a pytree of jnp arrays

ACTIVATIONS: dict[str, Callable[[jnp.ndarray], jnp.ndarray]] = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
}


class Layer(Protocol):
    """One trainable map ``h (b, in) -> a (b, out)`` (pre-activation)."""

    out_features: int

    def init(self, key: jax.Array, in_features: int) -> Params: ...

    def apply(self, params: Params, h: jnp.ndarray) -> jnp.ndarray: ...


@dataclass(frozen=True)
class Dense:
    """Fully connected layer ``a = h W + b``; W (in, out) float32, LeCun-normal init, b = 0."""

    out_features: int

    def init(self, key: jax.Array, in_features: int) -> Params:
        w = jax.random.normal(key, (in_features, self.out_features), jnp.float32) / jnp.sqrt(in_features)
        return {"w": w, "b": jnp.zeros((self.out_features,), jnp.float32)}

    def apply(self, params: Params, h: jnp.ndarray) -> jnp.ndarray:
        return h @ params["w"] + params["b"]


@dataclass(frozen=True)
class Network:
    """Hidden layers (each followed by ``activation``) and a linear output layer (logits)."""

    hidden: tuple[Layer, ...]
    output: Layer
    activation: str = "tanh"

    @property
    def act(self) -> Callable[[jnp.ndarray], jnp.ndarray]:
        return ACTIVATIONS[self.activation]

    @property
    def layers(self) -> tuple[Layer, ...]:
        return (*self.hidden, self.output)

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        """Feedback size of each hidden layer (slices of the one global projection)."""
        return tuple(layer.out_features for layer in self.hidden)

    def init(self, key: jax.Array, in_features: int) -> list[Params]:
        keys = jax.random.split(key, len(self.layers))
        params, d = [], in_features
        for k, layer in zip(keys, self.layers, strict=True):
            params.append(layer.init(k, d))
            d = layer.out_features
        return params

    def forward(self, params: Sequence[Params], x: jnp.ndarray) -> tuple[jnp.ndarray, list, list]:
        """Logits (b, C), hidden inputs [h_0 = x, ..., h_{L-1}], hidden pre-activations [a_1..a_{L-1}]."""
        h, inputs, pre = x, [], []
        for layer, p in zip(self.hidden, params[:-1], strict=True):
            inputs.append(h)
            a = layer.apply(p, h)
            pre.append(a)
            h = self.act(a)
        inputs.append(h)
        return self.output.apply(params[-1], h), inputs, pre

    def logits(self, params: Sequence[Params], x: jnp.ndarray) -> jnp.ndarray:
        return self.forward(params, x)[0]


def mlp(hidden: Sequence[int], n_classes: int, activation: str = "tanh") -> Network:
    """MLP with the given hidden widths (e.g. (256, 256)) and ``n_classes`` outputs."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}")
    if not hidden or any(int(w) < 1 for w in hidden):
        raise ValueError(f"hidden widths must be a non-empty list of integers >= 1, got {list(hidden)}")
    return Network(tuple(Dense(int(w)) for w in hidden), Dense(int(n_classes)), activation)
