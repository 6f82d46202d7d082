"""The trainer's task for ``--model cnn-opu``: images whose forward pass crosses the device.

:class:`OpticalImageTask` is an :class:`~host.train.tasks.ImageTask` whose batches are *prepared*
with the current parameters before each step (:meth:`prepare`): the jitted backbone gives the
optical layer's input h, the device measures y (one batched call, outside jit), and the batch's
inputs become ``(x, y)``. The trainer calls ``prepare`` when a task has it (the only change the
trainer needed) and opens the device for tasks with ``needs_device``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from drivers.base import Device
from host.train.steps import Batch, Steps
from host.train.tasks import ImageTask

from .model import ConvOpticalNet
from .optical import OpticalLayer


@dataclass
class OpticalImageTask(ImageTask):
    """Image classification with an optical layer in the model's forward path."""

    layer: OpticalLayer | None = field(default=None)
    needs_device = True

    def __post_init__(self) -> None:
        self._features = jax.jit(self.model.features)

    def attach(self, device: Device, settings: dict | None = None) -> dict:
        """Configure ``device`` as the model's optical layer; returns its settings dump."""
        m: ConvOpticalNet = self.model
        self.layer = OpticalLayer.attach(device, m.n_in, m.n_out, settings)
        return self.layer.settings

    def example(self) -> Batch:
        x = self.data.x_train[: self.batch_size]
        y = np.zeros((x.shape[0], self.model.n_out), np.float32)
        return Batch(
            (jnp.asarray(x), jnp.asarray(y)),
            jnp.asarray(self.data.y_train[: self.batch_size]),
            jnp.ones((x.shape[0],), jnp.float32),
        )

    def optical(self, params, x: np.ndarray) -> np.ndarray:
        """The optical layer's measured output (b, m) for images x (b, d)."""
        if self.layer is None:
            raise RuntimeError("the optical layer is not attached to a device (call attach first)")
        return self.layer.forward(np.asarray(self._features(params, jnp.asarray(x))))

    def prepare(self, params, batch: Batch) -> Batch:
        """The batch with inputs ``(x, y)``, y measured with the current parameters."""
        x = batch.inputs[0] if isinstance(batch.inputs, tuple) else batch.inputs
        return Batch((x, jnp.asarray(self.optical(params, x))), batch.y, batch.w)

    def evaluate(self, steps: Steps, params, chunk: int = 2000) -> dict[str, float]:
        loss, correct, count = 0.0, 0.0, 0.0
        x, y = self.data.x_test, self.data.y_test
        for lo in range(0, x.shape[0], chunk):
            b = self.prepare(params, self._batch(x[lo : lo + chunk], y[lo : lo + chunk]))
            ls, c, n = steps.evaluate(params, b)
            loss, correct, count = loss + float(ls), correct + float(c), count + float(n)
        return {"test_loss": loss / count, "test_accuracy": correct / count}


def build_optical_task(cfg, data) -> OpticalImageTask:
    """The task of a ``--model cnn-opu`` :class:`~host.train.trainer.TrainConfig` on ``data``."""
    from host.train.models import cnn
    from host.train.tasks import TaskError

    from .optical import surrogate

    if cfg.mode not in ("bp", "dfa"):
        raise TaskError(
            f"--model cnn-opu trains with --mode bp or dfa (the device is busy in the forward "
            f"path; its feedback is digital), got --mode {cfg.mode}"
        )
    if data.image_shape is None:
        raise TaskError(f"--model cnn-opu needs images; dataset {cfg.dataset!r} has none")
    backbone = cnn(data.image_shape, data.n_classes, cfg.channels, cfg.dense_width, cfg.act,
                   conv_points=cfg.cnn_feedback == "blocks")
    s = surrogate("random", backbone.dense_width, cfg.optical_outputs, seed=cfg.surrogate_seed)
    model = ConvOpticalNet(backbone, int(cfg.optical_outputs), s)
    return OpticalImageTask(data, model, cfg.batch_size, cfg.alignment_batch)
