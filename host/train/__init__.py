"""Hardware-in-the-loop DFA trainer (issues 4, 9): BP, digital DFA, optical DFA, PFA and shallow training of
any JAX model with feedback points (MLP, conv net, GCN).

The device is reached only through :mod:`drivers` (``drivers.connect``); see docs/training.md.

    >>> from host.train import TrainConfig, train                              # doctest: +SKIP
    >>> res = train(TrainConfig(mode="optical-dfa", epochs=3), "runs/odfa")     # doctest: +SKIP
"""

from .data import DATASETS, Dataset, DatasetError, load_dataset
from .feedback import DigitalFeedback, FeedbackConfig, OpticalFeedback
from .models import MODELS, Dense, Layer, Network, cnn, gcn, mlp
from .points import FeedbackPointError, PointLayout, discover_points, feedback_point
from .trainer import MODES, TrainConfig, TrainingError, TrainingInterrupted, TrainResult, read_metrics, train

__all__ = [
    "DATASETS",
    "MODELS",
    "MODES",
    "Dataset",
    "DatasetError",
    "Dense",
    "DigitalFeedback",
    "FeedbackConfig",
    "FeedbackPointError",
    "Layer",
    "Network",
    "OpticalFeedback",
    "PointLayout",
    "TrainConfig",
    "TrainResult",
    "TrainingError",
    "TrainingInterrupted",
    "cnn",
    "discover_points",
    "feedback_point",
    "gcn",
    "load_dataset",
    "mlp",
    "read_metrics",
    "train",
]
