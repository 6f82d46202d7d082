"""Graph convolutional network (Kipf & Welling 2017), two layers, full batch.

    H1 = f(Â X W1 + b1)            -> feedback point "gcn1" (per node, hidden values)
    logits = Â H1 W2 + b2

with Â = D^-1/2 (A + I) D^-1/2 (self-loops added, symmetric normalization) held as a weighted edge
list (:class:`Graph`): ``(Â h)_i = sum_{(j -> i)} w_ji h_j`` by ``jax.ops.segment_sum``, so memory grows
with the edges, not with n^2. Inputs: ``(x (n, F) float32, Graph)``; logits (n, C). The per-sample
axis of the loss, the error and the feedback is the node axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..points import feedback_point
from .mlp import ACTIVATIONS


class Graph(NamedTuple):
    """Â as edges j -> i: senders (E,) int32, receivers (E,) int32, weights (E,) float32."""

    senders: jnp.ndarray
    receivers: jnp.ndarray
    weights: jnp.ndarray


def normalized_adjacency(edges: np.ndarray, n_nodes: int) -> Graph:
    """Â = D^-1/2 (A + I) D^-1/2 of an undirected graph given as index pairs ``edges`` (E, 2).

    Edges are symmetrized and deduplicated; self-loops in the input are dropped before I is added.
    """
    e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    if e.size and (e.min() < 0 or e.max() >= n_nodes):
        raise ValueError(f"edge indices must lie in [0, {n_nodes}), got [{e.min()}, {e.max()}]")
    e = e[e[:, 0] != e[:, 1]]
    both = np.concatenate([e, e[:, ::-1], np.repeat(np.arange(n_nodes)[:, None], 2, axis=1)])
    both = np.unique(both, axis=0)
    deg = np.bincount(both[:, 1], minlength=n_nodes).astype(np.float64)
    w = 1.0 / np.sqrt(deg[both[:, 0]] * deg[both[:, 1]])
    return Graph(
        jnp.asarray(both[:, 0], jnp.int32), jnp.asarray(both[:, 1], jnp.int32), jnp.asarray(w, jnp.float32)
    )


def propagate(graph: Graph, h: jnp.ndarray) -> jnp.ndarray:
    """Â h for h (n, d)."""
    return jax.ops.segment_sum(
        graph.weights[:, None] * h[graph.senders], graph.receivers, num_segments=h.shape[0]
    )


@dataclass(frozen=True)
class GCN:
    """Two-layer GCN with ``hidden`` units; Glorot-uniform weights, zero biases (as Kipf & Welling)."""

    n_features: int
    hidden: int = 16
    n_classes: int = 7
    activation: str = "relu"

    def init(self, key: jax.Array, inputs: Any = None) -> dict:
        k1, k2 = jax.random.split(key)

        def glorot(k, fi, fo):
            lim = math.sqrt(6.0 / (fi + fo))
            return jax.random.uniform(k, (fi, fo), jnp.float32, -lim, lim)

        return {
            "gcn1": {
                "w": glorot(k1, self.n_features, self.hidden),
                "b": jnp.zeros((self.hidden,), jnp.float32),
            },
            "out": {
                "w": glorot(k2, self.hidden, self.n_classes),
                "b": jnp.zeros((self.n_classes,), jnp.float32),
            },
        }

    def apply(self, params: dict, inputs: tuple[jnp.ndarray, Graph]) -> jnp.ndarray:
        x, graph = inputs
        f = ACTIVATIONS[self.activation]
        h = feedback_point(f(propagate(graph, x @ params["gcn1"]["w"]) + params["gcn1"]["b"]), "gcn1")
        return propagate(graph, h @ params["out"]["w"]) + params["out"]["b"]


def gcn(n_features: int, n_classes: int, hidden: int = 16, activation: str = "relu") -> GCN:
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}")
    if int(hidden) < 1:
        raise ValueError(f"GCN hidden width must be >= 1, got {hidden}")
    return GCN(int(n_features), int(hidden), int(n_classes), activation)
