"""Sweeps of many training runs on Ray Tune (``opu sweep SPEC.yaml``), locally or on a cluster.

    >>> from host.sweep import load_spec, run_sweep                         # doctest: +SKIP
    >>> report = run_sweep(load_spec("sweep.yaml"), "runs/sweep")           # doctest: +SKIP

Ray is the optional ``cluster`` extra (``pip install -e '.[cluster]'``); see docs/sweep.md.
"""

from .runner import SweepReport, run_sweep, worker_env
from .spec import SpecError, SweepSpec, load_spec, trial_id
from .trial import device_config, run_trial

__all__ = [
    "SpecError",
    "SweepReport",
    "SweepSpec",
    "device_config",
    "load_spec",
    "run_sweep",
    "run_trial",
    "trial_id",
    "worker_env",
]
