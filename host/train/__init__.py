"""Hardware-in-the-loop DFA trainer (issue 4): BP, digital DFA, optical DFA and shallow training.

The device is reached only through :mod:`drivers` (``drivers.connect``); see docs/training.md.

    >>> from host.train import TrainConfig, train                              # doctest: +SKIP
    >>> res = train(TrainConfig(mode="optical-dfa", epochs=3), "runs/odfa")     # doctest: +SKIP
"""

from .data import DATASETS, Dataset, DatasetError, load_dataset
from .feedback import DigitalFeedback, FeedbackConfig, OpticalFeedback
from .models import Dense, Layer, Network, mlp
from .trainer import MODES, TrainConfig, TrainingError, TrainingInterrupted, TrainResult, read_metrics, train

__all__ = [
    "DATASETS",
    "MODES",
    "Dataset",
    "DatasetError",
    "Dense",
    "DigitalFeedback",
    "FeedbackConfig",
    "Layer",
    "Network",
    "OpticalFeedback",
    "TrainConfig",
    "TrainResult",
    "TrainingError",
    "TrainingInterrupted",
    "load_dataset",
    "mlp",
    "read_metrics",
    "train",
]
