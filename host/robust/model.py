"""``cnn-opu``: conv backbone -> dense -> feedback point -> optical layer -> dense readout -> logits.

    h   = f(dense(convs(x)))               (b, n)   feedback point "dense" (DFA signal enters here;
                                                    also after each conv block with --cnn-feedback blocks)
    y   = optical(h)                       (b, m)   measured on the device, outside jit
    out = y W_out + b_out                  (b, C)   true gradients (autodiff from the loss)

The model's inputs are the pair ``(x, y)``: the images (b, H*W) in [0, 1] and the optical layer's
measured output for them (the task computes ``y`` between two jitted halves:
:meth:`ConvOpticalNet.features` then :meth:`host.robust.optical.OpticalLayer.forward`). Inside
``apply`` the optical value is ``y`` with the gradient of the model's :class:`Surrogate` (the
defender's ``random`` one for training), so in ``bp`` mode the backbone learns through the
defender's random backward and in ``dfa`` mode the point cuts it and the backbone gets DFA feedback.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from host.train.models.cnn import ConvNet
from host.train.pfa import linear

from .optical import Surrogate, with_surrogate


@dataclass(frozen=True)
class ConvOpticalNet:
    """A :class:`ConvNet` backbone whose dense layer (width n) feeds an n -> m optical layer.

    ``backbone.dense_width`` is n (DMD features), ``n_out`` is m (camera pixels).
    """

    backbone: ConvNet
    n_out: int
    surrogate: Surrogate

    @property
    def n_in(self) -> int:
        return self.backbone.dense_width

    def with_surrogate(self, s: Surrogate) -> ConvOpticalNet:
        """The same network with another backward surrogate (an attacker's)."""
        return dataclasses.replace(self, surrogate=s)

    def init(self, key: jax.Array, inputs: Any = None) -> dict:
        k_bb, k_out = jax.random.split(key)
        params = self.backbone.init(k_bb)
        params["out"] = {
            "w": jax.random.normal(k_out, (self.n_out, self.backbone.n_classes), jnp.float32)
            / math.sqrt(self.n_out),
            "b": jnp.zeros((self.backbone.n_classes,), jnp.float32),
        }
        return params

    def features(self, params: dict, x: jnp.ndarray) -> jnp.ndarray:
        """h (b, n): the optical layer's input (after the dense layer's nonlinearity and its point;
        points after the conv blocks too when ``backbone.conv_points``)."""
        return self.backbone.features(params, x)

    def head(self, params: dict, y: jnp.ndarray) -> jnp.ndarray:
        """Logits (b, C) of the optical output y (b, m)."""
        # scaled so that the readout sees O(1) inputs: y has a std of a few % of the ADC range
        return linear(jnp.matmul, y * 10.0, params["out"]["w"], "out") + params["out"]["b"]

    def apply(self, params: dict, inputs: tuple[jnp.ndarray, jnp.ndarray]) -> jnp.ndarray:
        """Logits (b, C) of ``inputs = (x (b, H*W), y (b, m) measured for x)``."""
        x, y = inputs
        h = self.features(params, x)
        return self.head(params, with_surrogate(y, h, self.surrogate))
