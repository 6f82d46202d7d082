"""Evaluate a ``cnn-opu`` run against every attack, next to its plain BP conv-net baseline.

:func:`evaluate` loads both runs, reconnects the device with the run's stored optical-layer settings,
and measures on the first ``n_samples`` test images (pixels in [0, 1]), for each eps:

* baseline (``bp``): FGSM and PGD with its true gradient, Square (black box);
* defended (``opu``): FGSM and PGD through the ``random`` (the defender's own backward) and ``bpda``
  surrogates; ``transfer`` (the baseline's PGD images); ``square``; ``hsj`` (on the first
  ``hsj_samples`` only); ``pr_S<k>``: PGD through the matrix recovered by TM retrieval with k anchors
  (the phase-retrieval attack), whose prediction correlation is recorded as its quality.

Then the gradient-masking sanity checks (docs/robustness.md): the undefended model falls to ~0 at the
largest eps; the defended one falls to <= 15 % at ``large_eps``; black-box attacks never beat the best
white-box attack by more than a tolerance; doubling PGD's steps never helps the defender.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import attacks as atk
from .finetune import load_run_params
from .optical import surrogate

ROBUSTNESS_JSON = "robustness.json"
ROBUSTNESS_PNG = "robustness.png"


class RobustnessError(ValueError):
    """The run cannot be evaluated as asked (the message says why and what to do)."""


@dataclass(frozen=True)
class EvalConfig:
    """Attack settings (defaults: the full configuration of bench/robustness.py)."""

    eps: tuple[float, ...] = (0.05, 0.1, 0.2)
    attacks: tuple[str, ...] = atk.ATTACKS
    n_samples: int = 1000
    pgd_steps: int = 50
    square_queries: int = 1000
    hsj_samples: int = 100
    hsj_iter: int = 10
    hsj_max_eval: int = 200
    pr_anchors: tuple[int, ...] = (5, 10, 20)
    large_eps: float = 0.5
    sanity_eps: float = 0.1
    seed: int = 0


@dataclass
class Report:
    natural: dict[str, float] = field(default_factory=dict)
    bp: dict[str, dict[str, float]] = field(default_factory=dict)
    opu: dict[str, dict[str, float]] = field(default_factory=dict)
    pr_quality: dict[str, dict] = field(default_factory=dict)
    sanity: dict[str, dict] = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    def put(self, who: str, attack: str, eps: float, acc: float) -> None:
        getattr(self, who).setdefault(attack, {})[f"{eps:g}"] = acc

    def as_dict(self) -> dict:
        return {
            "natural": self.natural,
            "bp": self.bp,
            "opu": self.opu,
            "pr_quality": self.pr_quality,
            "sanity": self.sanity,
            "sanity_checks_passed": all(c["passed"] for c in self.sanity.values()),
            **self.info,
        }


def _ce(logits, y):
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))


def digital_target(apply: Callable, params, n_classes: int) -> atk.Target:
    """A digital model: predict and its true input gradient (both jitted)."""
    pred = jax.jit(lambda x: apply(params, x))
    g = jax.jit(jax.grad(lambda x, y: _ce(apply(params, x), y) * x.shape[0]))
    return atk.Target(
        lambda x: np.asarray(pred(jnp.asarray(x))),
        lambda x, y: np.asarray(g(jnp.asarray(x), jnp.asarray(y))),
        n_classes,
    )


def optical_target(task, params, s=None) -> atk.Target:
    """The defended model: predict through the device; gradient through surrogate ``s``, evaluated at
    the device's own forward value (one device call per gradient)."""
    model = task.model if s is None else task.model.with_surrogate(s)
    head = jax.jit(lambda y: model.head(params, y))
    g = jax.jit(jax.grad(lambda x, yd, y: _ce(model.apply(params, (x, yd)), y) * x.shape[0]))

    def predict(x):
        return np.asarray(head(jnp.asarray(task.optical(params, x))))

    def grad(x, y):
        yd = task.optical(params, x)
        return np.asarray(g(jnp.asarray(x), jnp.asarray(yd), jnp.asarray(y)))

    return atk.Target(predict, grad, task.n_classes)


def _pr_surrogate(task, dev, anchors: int, log) -> tuple:
    from host.tm import make_plan, prediction_correlation, retrieve_tm

    layer = task.layer
    plan = make_plan(layer.n_in, anchors=anchors)
    tm, _ = retrieve_tm(dev, plan, None, light="keep", progress=False, echo=None)
    corr = prediction_correlation(dev, tm)
    layer.restore()
    log(f"TM retrieval S={anchors}: {plan.frames} frames, prediction correlation {corr:.4f}")
    s = surrogate("tm", layer.n_in, layer.n_out, tm_matrix=tm.matrix, adc_max_dn=layer.adc_max_dn)
    return s, {"anchors": anchors, "frames": plan.frames, "prediction_correlation": corr}


def evaluate(
    run_dir: str | Path,
    cfg: EvalConfig,
    *,
    baseline: str | Path | None = None,
    device_uri: str | None = None,
    out: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Run the attacks of ``cfg`` on the run in ``run_dir``; write robustness.json/.png into ``out``
    (default ``run_dir``) and return the report dict."""
    import drivers
    from host.train.tasks import build_task

    bad = [a for a in cfg.attacks if a not in atk.ATTACKS]
    if bad:
        raise RobustnessError(f"unknown attack(s) {bad}; choose from {', '.join(atk.ATTACKS)}")
    if not cfg.eps or any(not 0 < e <= 1 for e in cfg.eps):
        raise RobustnessError(f"eps must be L-inf radii in (0, 1], got {list(cfg.eps)}")
    params, tcfg, meta = load_run_params(run_dir, with_meta=True)
    if tcfg.model != "cnn-opu":
        raise RobustnessError(
            f"{run_dir} is a --model {tcfg.model} run; opu robustness evaluates cnn-opu runs"
        )
    if tcfg.input_scale != "pixels":
        raise RobustnessError(
            f"{run_dir} was trained on standardized inputs; L-inf attacks need pixels in "
            "[0, 1]: train with --input-scale pixels"
        )
    base_dir = baseline or tcfg.init_from
    if base_dir is None:
        raise RobustnessError(
            "no baseline: pass --baseline RUN (a --model cnn run), or evaluate a run trained with --init-from"
        )
    bparams, bcfg = load_run_params(base_dir)
    if bcfg.model != "cnn" or bcfg.input_scale != "pixels" or bcfg.dataset != tcfg.dataset:
        raise RobustnessError(f"baseline {base_dir} must be a --model cnn run on {tcfg.dataset} pixels")
    task = build_task(tcfg)
    btask = build_task(bcfg)
    n = min(cfg.n_samples, task.data.x_test.shape[0])
    x, y = task.data.x_test[:n], task.data.y_test[:n]
    rep = Report()
    t0 = time.perf_counter()
    dev = drivers.connect(device_uri or tcfg.device)
    try:
        stored = meta.get("device") or {}
        task.attach(dev, stored.get("settings"))
        bp = digital_target(btask.model.apply, bparams, task.n_classes)
        opu = {
            k: optical_target(
                task,
                params,
                None
                if k == "random"
                else surrogate(k, task.model.n_in, task.model.n_out, seed=tcfg.surrogate_seed),
            )
            for k in ("random", "bpda")
        }
        base = opu["random"]
        rep.natural = {"bp": atk.accuracy(bp, x, y), "opu": atk.accuracy(base, x, y)}
        log(f"natural accuracy on {n} test images: bp {rep.natural['bp']:.3f}, opu {rep.natural['opu']:.3f}")
        pr = {}
        if "pr" in cfg.attacks:
            for s_ in cfg.pr_anchors:
                sur, q = _pr_surrogate(task, dev, s_, log)
                pr[s_] = optical_target(task, params, sur)
                rep.pr_quality[f"S{s_}"] = q
        steps = cfg.pgd_steps
        for eps in cfg.eps:
            _attack_eps(cfg, rep, eps, x, y, bp, opu, pr, steps, log)
        _sanity(cfg, rep, x, y, bp, opu, pr, log, robust_baseline=bcfg.adv_train_eps is not None)
        rep.info = {
            "run_dir": str(run_dir),
            "baseline": str(base_dir),
            "dataset": tcfg.dataset,
            "n_samples": n,
            "hsj_samples": min(cfg.hsj_samples, n),
            "eps": list(cfg.eps),
            "attacks": list(cfg.attacks),
            "pgd_steps": steps,
            "pgd_step_size": "2.5 eps / steps",
            "square_queries": cfg.square_queries,
            "hsj_iter": cfg.hsj_iter,
            "hsj_max_eval": cfg.hsj_max_eval,
            "device": dev.resource,
            "device_frames": int(dev.frames_acquired),
            "wall_s": time.perf_counter() - t0,
            "queries": {"bp": bp.queries, **{k: t.queries for k, t in opu.items()}},
        }
    finally:
        dev.close()
    report = rep.as_dict()
    out_dir = Path(out or run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / ROBUSTNESS_JSON).write_text(json.dumps(report, indent=2))
    plot(report, out_dir / ROBUSTNESS_PNG)
    return report


def _attack_eps(cfg, rep, eps, x, y, bp, opu, pr, steps, log) -> None:
    att, seed = cfg.attacks, cfg.seed
    x_bp_pgd = None

    def pgd_accuracy(t) -> float:  # white-box PGD through the attacker's surrogate t
        return atk.accuracy(t, atk.chunked(atk.pgd, t, x, y, eps, steps=steps, seed=seed), y)

    if "fgsm" in att:
        rep.put("bp", "fgsm", eps, atk.accuracy(bp, atk.chunked(atk.fgsm, bp, x, y, eps), y))
        for k, t in opu.items():
            rep.put("opu", f"fgsm_{k}", eps, atk.accuracy(t, atk.chunked(atk.fgsm, t, x, y, eps), y))
    if "pgd" in att or "transfer" in att:
        x_bp_pgd = atk.chunked(atk.pgd, bp, x, y, eps, steps=steps, seed=seed)
        rep.put("bp", "pgd", eps, atk.accuracy(bp, x_bp_pgd, y))
    if "pgd" in att:
        for k, t in opu.items():
            rep.put("opu", f"pgd_{k}", eps, pgd_accuracy(t))
    if "transfer" in att:
        rep.put("opu", "transfer", eps, atk.accuracy(opu["random"], x_bp_pgd, y))
    for s_, t in pr.items():
        rep.put("opu", f"pr_S{s_}", eps, pgd_accuracy(t))
    if "square" in att:
        for who, t in (("bp", bp), ("opu", opu["random"])):
            xa = atk.chunked(atk.square, t, x, y, eps, max_queries=cfg.square_queries, seed=seed)
            rep.put(who, "square", eps, atk.accuracy(t, xa, y))
    if "hsj" in att:
        k = min(cfg.hsj_samples, len(x))
        key = "_hsj_adv"
        if not hasattr(rep, key):  # one unbounded run serves every eps
            setattr(
                rep,
                key,
                atk.hop_skip_jump(opu["random"], x[:k], y[:k], cfg.hsj_iter, cfg.hsj_max_eval, seed=seed),
            )
        rep.put(
            "opu", "hsj", eps, atk.accuracy(opu["random"], atk.within(getattr(rep, key), x[:k], eps), y[:k])
        )
    log(
        f"eps {eps:g}: bp "
        + ", ".join(f"{a} {v[f'{eps:g}']:.3f}" for a, v in rep.bp.items())
        + " | opu "
        + ", ".join(f"{a} {v[f'{eps:g}']:.3f}" for a, v in rep.opu.items() if f"{eps:g}" in v)
    )


def _tol(p: float, n: int) -> float:
    """Two binomial standard errors of an accuracy p on n samples, at least 2 points."""
    return max(0.02, 2 * math.sqrt(max(p * (1 - p), 0.01) / n))


def _sanity(cfg, rep, x, y, bp, opu, pr, log, robust_baseline: bool = False) -> None:
    n, e = len(x), f"{cfg.sanity_eps:g}"
    big = max(cfg.eps)
    # the baseline's PGD images at a large radius (also the defended model's transfer images below)
    xl = atk.chunked(atk.pgd, bp, x, y, cfg.large_eps, steps=cfg.pgd_steps, seed=cfg.seed)
    if "pgd" in rep.bp:
        acc = rep.bp["pgd"][f"{big:g}"]
        check = {"eps": big, "pgd_acc_bp": acc, "max": 0.05, "passed": acc <= 0.05}
        if robust_baseline and acc > 0.05:
            # an adversarially trained baseline is meant to hold at the largest attacked eps: the
            # check is that its PGD still reaches ~0 at large_eps (the attack is not masked)
            acc = atk.accuracy(bp, xl, y)
            check = {"eps": cfg.large_eps, "pgd_acc_bp": acc, "max": 0.05, "passed": acc <= 0.05,
                     "note": "adversarially trained baseline: checked at large_eps"}
        rep.sanity["undefended_to_zero"] = check
    # the defended model at a large radius: the baseline's PGD images (transfer) and FGSM-BPDA
    acc_l = min(
        atk.accuracy(opu["random"], xl, y),
        atk.accuracy(opu["bpda"], atk.chunked(atk.fgsm, opu["bpda"], x, y, cfg.large_eps), y),
    )
    rep.sanity["defended_to_zero_at_large_eps"] = {
        "eps": cfg.large_eps,
        "acc_opu": acc_l,
        "max": 0.15,
        "passed": acc_l <= 0.15,
    }
    for who in ("bp", "opu"):
        res = getattr(rep, who)
        white = [v[e] for a, v in res.items() if a not in ("square", "hsj", "transfer") and e in v]
        black = [v[e] for a, v in res.items() if a in ("square", "hsj") and e in v]
        if white and black:
            tol = _tol(min(white), n)
            rep.sanity[f"black_box_not_better_{who}"] = {
                "eps": cfg.sanity_eps,
                "best_white_box": min(white),
                "best_black_box": min(black),
                "tolerance": tol,
                "passed": min(black) >= min(white) - tol,
            }
    # doubling the PGD steps never helps the defender
    targets = {
        "bp": bp,
        **{f"opu_{k}": t for k, t in opu.items()},
        **{f"opu_pr_S{k}": t for k, t in pr.items()},
    }
    for name, t in targets.items():
        a1 = atk.accuracy(
            t, atk.chunked(atk.pgd, t, x, y, cfg.sanity_eps, steps=cfg.pgd_steps, seed=cfg.seed + 1), y
        )
        a2 = atk.accuracy(
            t, atk.chunked(atk.pgd, t, x, y, cfg.sanity_eps, steps=2 * cfg.pgd_steps, seed=cfg.seed + 1), y
        )
        tol = _tol(a1, n)
        rep.sanity[f"more_steps_{name}"] = {
            "eps": cfg.sanity_eps,
            f"acc_{cfg.pgd_steps}": a1,
            f"acc_{2 * cfg.pgd_steps}": a2,
            "tolerance": tol,
            "passed": a2 <= a1 + tol,
        }
    log("sanity: " + ", ".join(f"{k} {'ok' if v['passed'] else 'FAILED'}" for k, v in rep.sanity.items()))


def worst_case(report: dict, eps: float) -> tuple[float, str]:
    """(lowest accuracy of the defended model over all attacks at eps, that attack)."""
    k = f"{eps:g}"
    cand = [(v[k], a) for a, v in report["opu"].items() if k in v]
    return min(cand) if cand else (float("nan"), "")


def plot(report: dict, path: Path) -> None:
    """Robust accuracy vs eps per attack: defended (solid) and baseline (dashed)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for who, style in (("opu", "-o"), ("bp", "--s")):
        for a, v in report[who].items():
            es = sorted(float(e) for e in v)
            ax.plot(
                [0, *es],
                [report["natural"][who], *[v[f"{e:g}"] for e in es]],
                style,
                ms=3,
                label=f"{who}: {a}",
            )
    ax.set_xlabel("L-inf eps (pixels in [0, 1])")
    ax.set_ylabel("robust accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(
        f"{report.get('dataset', '')}: defended (cnn-opu, solid) vs BP conv net (dashed), "
        f"n={report.get('n_samples')}",
        fontsize=9,
    )
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_list(text: str, kind: type, name: str) -> Sequence:
    try:
        return tuple(kind(t) for t in text.split(",") if t.strip())
    except ValueError as err:
        raise RobustnessError(f"{name} takes a comma-separated list, got {text!r}") from err
