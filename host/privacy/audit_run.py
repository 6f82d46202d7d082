"""Train once with canaries and audit the run (``opu privacy-audit``, bench/privacy.py).

The training configuration must carry ``privacy.audit_canaries = m > 0``. The guesses are fixed before
training: k+ = k- = ``guess_fraction`` x m.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .audit import audit, make_canaries

AUDIT_FILE = "audit.json"


def canary_scores(net, params, canaries) -> np.ndarray:
    """Minus each canary's cross-entropy under its canary label (m,) float64: high = looks trained on."""
    logits = net.apply(params, jnp.asarray(canaries.x))
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.asarray(canaries.y))
    return -np.asarray(jax.device_get(loss), dtype=np.float64)


def run_audit(cfg, out_dir: str | Path, *, guess_fraction: float = 0.1, confidence: float = 0.95,
              log=None, progress: bool = False, **train_kw) -> dict:
    """Train ``cfg`` into ``out_dir`` with canaries, audit, write ``OUT/audit.json`` and return it."""
    from host.train import train
    from host.train.models import mlp

    if cfg.privacy is None or cfg.privacy.audit_canaries <= 0:
        raise ValueError("an audit needs canaries: PrivacyConfig(audit_canaries=m > 0)")
    res = train(cfg, out_dir, progress=progress, log=log, **train_kw)
    can = res.canaries
    net = mlp(cfg.hidden, _n_classes(res), cfg.act)
    scores = canary_scores(net, res.params, can)
    m = scores.shape[0]
    k = max(1, round(guess_fraction * m))
    delta = cfg.privacy.delta
    a = audit(scores, can.included, delta, k, k, confidence)
    final = res.final
    priv = final.get("privacy") or {}
    out = {"eps_lower": a.eps_lower, "eps": priv.get("epsilon"), "eps_pld": priv.get("epsilon_pld"),
           "delta": delta, "audit": a.as_dict(), "test_accuracy": final["test_accuracy"],
           "epochs": final["epoch"], "mode": cfg.mode,
           "score_gap": float(scores[can.included].mean() - scores[~can.included].mean())}
    Path(out_dir, AUDIT_FILE).write_text(json.dumps(out, indent=2))
    return out


def _n_classes(res) -> int:
    return int(res.params[-1]["b"].shape[0])


__all__ = ["canary_scores", "make_canaries", "run_audit"]
