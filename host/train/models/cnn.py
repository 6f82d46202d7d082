"""Convolutional network: [conv 3x3 - f - maxpool 2x2] x n, dense - f, linear output; a feedback point
after each block.

Shapes: x (b, H*W) float32 (flattened grey images, as the datasets store them) -> reshaped to
(b, H, W, 1) NHWC -> logits (b, C). With the default channels (32, 64) and a dense width of 128 on
28 x 28 images the points are ``conv1`` (14, 14, 32) = 6272, ``conv2`` (7, 7, 64) = 3136 and ``dense``
(128,) values per sample: m = 9536 feedback outputs (camera pixels) per sample. Odd sizes are pooled
with "SAME" padding (ceil(H / 2)). Plain JAX (``jax.lax.conv_general_dilated``,
``jax.lax.reduce_window``): parameters are plain dicts, so checkpoints and PFA treat them like the MLP's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from ..pfa import linear
from ..points import feedback_point
from .mlp import ACTIVATIONS

Params = Any


def conv2d(x: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
    """'SAME' 2-D convolution, stride 1: x (b, H, W, Cin), kernel (kh, kw, Cin, Cout) -> (b, H, W, Cout)."""
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def max_pool(x: jnp.ndarray, size: int = 2) -> jnp.ndarray:
    """size x size max pooling, stride size, 'SAME' padding: (b, H, W, C) -> (b, ceil(H/size), ..., C)."""
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, size, size, 1), (1, size, size, 1), "SAME")


@dataclass(frozen=True)
class ConvNet:
    """Conv blocks of ``channels`` (3 x 3 kernels), one dense layer of ``dense_width``, ``n_classes`` outputs.

    Init: He-normal (relu) or LeCun-normal (tanh) weights, zero biases.
    """

    image_shape: tuple[int, int]
    channels: tuple[int, ...] = (32, 64)
    dense_width: int = 128
    n_classes: int = 10
    activation: str = "relu"
    kernel_size: int = 3
    # False: one point, after the dense layer; the conv blocks then learn by autodiff of that point's
    # DFA signal through the dense layer (BP below the point, no point below to stop it)
    conv_points: bool = True

    def _std(self, fan_in: int) -> float:
        return math.sqrt((2.0 if self.activation == "relu" else 1.0) / fan_in)

    def feature_shape(self) -> tuple[int, int, int]:
        h, w = self.image_shape
        for _ in self.channels:
            h, w = -(-h // 2), -(-w // 2)
        return h, w, self.channels[-1]

    def init(self, key: jax.Array, inputs: Any = None) -> dict:
        keys = jax.random.split(key, len(self.channels) + 2)
        params: dict[str, Any] = {}
        cin, k = 1, self.kernel_size
        for i, (c, kk) in enumerate(zip(self.channels, keys, strict=False)):
            fan_in = k * k * cin
            params[f"conv{i + 1}"] = {
                "w": self._std(fan_in) * jax.random.normal(kk, (k, k, cin, c), jnp.float32),
                "b": jnp.zeros((c,), jnp.float32),
            }
            cin = c
        d = math.prod(self.feature_shape())
        params["dense"] = {
            "w": self._std(d) * jax.random.normal(keys[-2], (d, self.dense_width), jnp.float32),
            "b": jnp.zeros((self.dense_width,), jnp.float32),
        }
        params["out"] = {
            "w": jax.random.normal(keys[-1], (self.dense_width, self.n_classes), jnp.float32)
            / math.sqrt(self.dense_width),
            "b": jnp.zeros((self.n_classes,), jnp.float32),
        }
        return params

    def apply(self, params: dict, x: jnp.ndarray) -> jnp.ndarray:
        """Logits (b, C) of flattened images x (b, H*W)."""
        h = self.features(params, x)
        return linear(jnp.matmul, h, params["out"]["w"], "out") + params["out"]["b"]

    def features(self, params: dict, x: jnp.ndarray) -> jnp.ndarray:
        """The dense layer's output (b, dense_width) of images x (b, H*W), after its feedback point."""
        f = ACTIVATIONS[self.activation]
        h = x.reshape(x.shape[0], *self.image_shape, 1)
        for i in range(len(self.channels)):
            p = params[f"conv{i + 1}"]
            h = max_pool(f(linear(conv2d, h, p["w"], f"conv{i + 1}") + p["b"]))
            if self.conv_points:
                h = feedback_point(h, f"conv{i + 1}")
        h = h.reshape(h.shape[0], -1)
        return feedback_point(
            f(linear(jnp.matmul, h, params["dense"]["w"], "dense") + params["dense"]["b"]), "dense"
        )


def cnn(
    image_shape: Sequence[int],
    n_classes: int,
    channels: Sequence[int] = (32, 64),
    dense_width: int = 128,
    activation: str = "relu",
    conv_points: bool = True,
) -> ConvNet:
    """A :class:`ConvNet` for grey images of ``image_shape`` (H, W)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}")
    if not channels or any(int(c) < 1 for c in channels) or int(dense_width) < 1:
        raise ValueError(
            f"channels must be a non-empty list of integers >= 1 and dense_width >= 1, got "
            f"{list(channels)}, {dense_width}"
        )
    if len(image_shape) != 2 or min(image_shape) < 1:
        raise ValueError(f"image_shape must be (H, W), got {tuple(image_shape)}")
    return ConvNet(
        (int(image_shape[0]), int(image_shape[1])),
        tuple(int(c) for c in channels),
        int(dense_width),
        int(n_classes),
        activation,
        conv_points=bool(conv_points),
    )
