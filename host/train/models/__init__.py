"""Trainer models: objects with ``init(key, inputs) -> params`` and ``apply(params, inputs) -> logits``
whose code marks its feedback points with :func:`host.train.points.feedback_point`.

* ``mlp`` - :class:`Network` of :class:`Dense` layers (points ``dense1``, ``dense2``, ...).
* ``cnn`` - :class:`ConvNet` (points ``conv1``, ``conv2``, ``dense``).
* ``gcn`` - :class:`GCN` (point ``gcn1``), full-batch node classification.
"""

from .cnn import ConvNet, cnn
from .gcn import GCN, Graph, gcn, normalized_adjacency
from .mlp import ACTIVATIONS, Dense, Layer, Network, mlp

MODELS = ("mlp", "cnn", "gcn")

__all__ = [
    "ACTIVATIONS",
    "GCN",
    "MODELS",
    "ConvNet",
    "Dense",
    "Graph",
    "Layer",
    "Network",
    "cnn",
    "gcn",
    "mlp",
    "normalized_adjacency",
]
