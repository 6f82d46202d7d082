"""A test-only in-process device whose link drops after a given number of sequences or frames.

It is the real in-process driver (:class:`drivers.sim.SimDevice` over the firmware model), so the
trainer and calibration tests exercise the same code as ``drivers.connect("sim")``; only a cable
pull is added: :class:`drivers.DeviceDisconnected` from the acquisition that crosses the limit.
"""

from __future__ import annotations

import numpy as np

import opu
from drivers.errors import DeviceDisconnected
from drivers.sim import SimDevice


class FlakySimDevice(SimDevice):
    """``SimDevice(config=...)`` that fails after ``fail_after_sequences`` or ``fail_after_frames``.

    ``sequences`` counts the acquisitions (pattern sequences) run so far.
    """

    def __init__(
        self,
        config: opu.OPUConfig,
        fail_after_sequences: int | None = None,
        fail_after_frames: int | None = None,
    ) -> None:
        super().__init__(config=config, resource="flaky-sim")
        self.fail_after_sequences = fail_after_sequences
        self.fail_after_frames = fail_after_frames
        self.sequences = 0

    def _run_sequence(self, packed: np.ndarray) -> np.ndarray:
        self.sequences += 1
        if (self.fail_after_sequences is not None and self.sequences > self.fail_after_sequences) or (
            self.fail_after_frames is not None and self.frames_acquired >= self.fail_after_frames
        ):
            raise DeviceDisconnected("connection reset by peer (test)", resource=self.resource)
        return super()._run_sequence(packed)
