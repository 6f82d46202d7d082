"""What the training loop iterates over: a model, its data, its batches, its held-out evaluation.

* :class:`ImageTask` - minibatches of (x (b, d), y, w = 1); epoch k visits the training set in the
  order ``numpy.random.default_rng([seed, k]).permutation`` (so a resumed run sees the same batches);
  the alignment batch is the first ``alignment_batch`` test samples; evaluation on the test set.
* :class:`GraphTask` - full-batch node classification: every step is the whole graph with
  w = the train mask (``steps_per_epoch`` steps make an epoch); alignment on the validation nodes
  (w = val mask), evaluation on the test nodes (and the validation accuracy alongside).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp
import numpy as np

from .data import Dataset, load_dataset
from .graphs import GRAPH_DATASETS, GraphData, load_graph
from .models import cnn, gcn, mlp, normalized_adjacency
from .steps import Batch, Steps


class TaskError(ValueError):
    """The model and the dataset do not go together (the message says what does)."""


@dataclass
class ImageTask:
    data: Dataset
    model: Any
    batch_size: int
    alignment_size: int

    lead_ndim = 1

    @property
    def n_classes(self) -> int:
        return self.data.n_classes

    @property
    def n_steps(self) -> int:
        return self.data.x_train.shape[0] // self.batch_size

    def example(self) -> Batch:
        return self._batch(self.data.x_train[: self.batch_size], self.data.y_train[: self.batch_size])

    @staticmethod
    def _batch(x: np.ndarray, y: np.ndarray) -> Batch:
        return Batch(jnp.asarray(x), jnp.asarray(y), jnp.ones(y.shape, jnp.float32))

    def batches(self, seed: int, epoch: int) -> Iterator[Batch]:
        order = np.random.default_rng([seed, epoch]).permutation(self.data.x_train.shape[0])
        for s in range(self.n_steps):
            idx = order[s * self.batch_size : (s + 1) * self.batch_size]
            yield self._batch(self.data.x_train[idx], self.data.y_train[idx])

    def alignment_batch(self) -> Batch:
        n = self.alignment_size
        return self._batch(self.data.x_test[:n], self.data.y_test[:n])

    def evaluate(self, steps: Steps, params, chunk: int = 2000) -> dict[str, float]:
        loss, correct, count = 0.0, 0.0, 0.0
        x, y = self.data.x_test, self.data.y_test
        # wide networks (a full-sensor hidden layer: 2 M units) evaluate in chunks of ~256 MiB per layer
        widest = max((int(getattr(layer, "out_features", 1)) for layer in getattr(self.model, "hidden", ())),
                     default=1)
        chunk = max(1, min(chunk, 2**26 // widest))
        for lo in range(0, x.shape[0], chunk):
            ls, c, n = steps.evaluate(params, self._batch(x[lo : lo + chunk], y[lo : lo + chunk]))
            loss, correct, count = loss + float(ls), correct + float(c), count + float(n)
        return {"test_loss": loss / count, "test_accuracy": correct / count}


@dataclass
class GraphTask:
    data: GraphData
    model: Any
    steps_per_epoch: int

    lead_ndim = 1

    def __post_init__(self) -> None:
        g = normalized_adjacency(self.data.edges, self.data.n_nodes)
        self._inputs = (jnp.asarray(self.data.x), g)
        self._y = jnp.asarray(self.data.y)
        self._w = {
            k: jnp.asarray(self.data.mask(getattr(self.data, f"{k}_idx"))) for k in ("train", "val", "test")
        }

    @property
    def n_classes(self) -> int:
        return self.data.n_classes

    @property
    def n_steps(self) -> int:
        return self.steps_per_epoch

    def _batch(self, split: str) -> Batch:
        return Batch(self._inputs, self._y, self._w[split])

    def example(self) -> Batch:
        return self._batch("train")

    def batches(self, seed: int, epoch: int) -> Iterator[Batch]:
        for _ in range(self.steps_per_epoch):
            yield self._batch("train")

    def alignment_batch(self) -> Batch:
        return self._batch("val")

    def evaluate(self, steps: Steps, params) -> dict[str, float]:
        out = {}
        for split in ("test", "val"):
            ls, c, n = steps.evaluate(params, self._batch(split))
            out[f"{split}_loss"], out[f"{split}_accuracy"] = float(ls) / float(n), float(c) / float(n)
        return out


def build_task(cfg) -> ImageTask | GraphTask:
    """The task of a :class:`~host.train.trainer.TrainConfig` (model + data)."""
    if cfg.adv_train_eps is not None and cfg.model not in ("mlp", "cnn"):
        raise TaskError(
            f"--adv-train-eps trains --model mlp or cnn (PGD needs the model's true input gradient); "
            f"got --model {cfg.model}"
        )
    if cfg.model == "gcn":
        if cfg.dataset not in GRAPH_DATASETS:
            raise TaskError(
                f"--model gcn needs a graph dataset ({', '.join(GRAPH_DATASETS)}), got {cfg.dataset!r}"
            )
        data = load_graph(cfg.dataset, cfg.data_dir, cfg.seed)
        model = gcn(data.n_features, data.n_classes, cfg.gcn_hidden, cfg.act)
        return GraphTask(data, model, cfg.graph_steps_per_epoch)
    if cfg.dataset in GRAPH_DATASETS:
        raise TaskError(f"dataset {cfg.dataset!r} is a graph: use --model gcn")
    data = load_dataset(cfg.dataset, cfg.data_dir, standardize=cfg.input_scale == "standardized")
    if cfg.max_train_samples is not None:
        k = cfg.max_train_samples
        data = dataclasses.replace(data, x_train=data.x_train[:k], y_train=data.y_train[:k])
    if data.x_train.shape[0] < cfg.batch_size:
        raise TaskError(f"batch_size={cfg.batch_size} exceeds the {data.x_train.shape[0]} training samples")
    if cfg.model == "cnn-opu":  # issue 13: an optical layer in the forward path (host/robust)
        from host.robust.task import build_optical_task

        return build_optical_task(cfg, data)
    if cfg.model == "cnn":
        if data.image_shape is None:
            raise TaskError(f"--model cnn needs images; dataset {cfg.dataset!r} has none")
        model = cnn(data.image_shape, data.n_classes, cfg.channels, cfg.dense_width, cfg.act,
                    conv_points=cfg.cnn_feedback == "blocks")
    else:
        model = mlp(cfg.hidden, data.n_classes, cfg.act)
    task = ImageTask(data, model, cfg.batch_size, cfg.alignment_batch)
    if cfg.adv_train_eps is not None:  # issue 13: PGD adversarial training (host/robust)
        from host.robust.adversarial import adversarial_task

        return adversarial_task(task, cfg)
    return task
