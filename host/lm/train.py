"""Training loop of the character-level Transformer: modes ``bp``, ``dfa``, ``optical-dfa``, ``shallow``.

A run is ``steps`` optimizer steps of ``batch_size`` random windows of ``context + 1`` bytes from the
train split (window offsets drawn from ``numpy.random.default_rng([seed, step])``, so a resumed run
sees the same batches). Every ``eval_every`` steps (a *period*): held-out bits per character on the
first ``eval_windows`` non-overlapping held-out windows, the alignment per block (cosine of the DFA
update and the BP gradient of the block's parameters on ``alignment_windows`` held-out windows), a
line in ``OUT/metrics.jsonl``, an atomic checkpoint and ``OUT/curves.png``.

Every metrics line carries the compute of its period: digital FLOPs (forward, backward, feedback;
:mod:`host.lm.flops`), device frames, device time at the configured frame time, modeled device
energy (device time × the device's electrical power) and host wall time; cumulative columns
(``tokens``, ``flops_total``, ``device_time_s_total``, ``device_energy_j_total``, ``wall_s_total``) are what
:mod:`host.lm.frontier` plots.

The device is reached only through :class:`drivers.base.Device`; optical feedback reuses
:class:`host.train.feedback.OpticalFeedback` (one device call per step for all b·T tokens, each
distinct binary pattern acquired once).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax
from pydantic import BaseModel, ConfigDict, Field

from drivers.base import Device
from drivers.errors import DriverError
from host.train import checkpoint
from host.train.feedback import DigitalFeedback, FeedbackConfig, OpticalFeedback

from . import corpus as corpus_mod
from . import flops as flops_mod
from . import model as tf
from .steps import LMSteps, lm_batch

MODES = ("bp", "dfa", "optical-dfa", "shallow")
CHECKPOINT, METRICS, CONFIG, CURVES = "checkpoint.npz", "metrics.jsonl", "config.json", "curves.png"
RESUME_MAY_CHANGE = ("steps", "device")
_ENCODING_STREAM, _ALIGNMENT_STREAM = 0x454E, 0x414C
#: wall power of a device whose configuration does not say (LightOn OPU, arXiv 2409.12965: < 30 W)
DEFAULT_DEVICE_POWER_W = 30.0


class LMConfig(BaseModel):
    """Everything that defines a language-model run (stored in ``OUT/config.json``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    mode: Literal["bp", "dfa", "optical-dfa", "shallow"] = "optical-dfa"
    dataset: Literal["pystdlib", "text"] = "pystdlib"
    text: str | None = Field(None, description="UTF-8 file or directory for dataset='text'")
    d_model: int = Field(128, ge=4)
    n_blocks: int = Field(4, ge=1)
    n_heads: int = Field(4, ge=1)
    context: int = Field(128, ge=2)
    batch_size: int = Field(16, ge=1)
    steps: int = Field(1000, ge=1)
    eval_every: int = Field(100, ge=1)
    eval_windows: int = Field(64, ge=1)
    alignment_windows: int = Field(8, ge=1)
    lr: float = Field(1e-3, gt=0)
    grad_clip: float | None = Field(1.0, gt=0, description="global-norm clip of the update (all modes)")
    seed: int = Field(0, ge=0)
    device: str = "sim"
    feedback: FeedbackConfig = Field(default_factory=FeedbackConfig)
    body_lr_scale: float = Field(
        0.1, gt=0, description="DFA modes: learning rate of the blocks and embeddings (trained by the "
        "feedback) relative to `lr`, which the head keeps (Launay et al. 2020 train DFA bodies slower)")

    def transformer(self) -> tf.TransformerConfig:
        return tf.TransformerConfig(self.d_model, self.n_blocks, self.n_heads, self.context,
                                    corpus_mod.VOCAB_SIZE)


class LMTrainingError(RuntimeError):
    """The run cannot start or continue (the message says why and what to do)."""


class LMTrainingInterrupted(LMTrainingError):
    """The device failed mid-run; ``steps_done`` steps are safe in the checkpoint."""

    def __init__(self, message: str, steps_done: int) -> None:
        super().__init__(message)
        self.steps_done = steps_done


@dataclass
class LMResult:
    config: LMConfig
    out_dir: Path
    metrics: list[dict] = field(default_factory=list)
    corpus: dict = field(default_factory=dict)
    unigram_bpc: float = float("nan")
    wall_s: float = 0.0

    @property
    def final(self) -> dict:
        return self.metrics[-1]


def make_optimizer(cfg: LMConfig) -> optax.GradientTransformation:
    """Adam (optionally after a global-norm clip); in DFA modes the body may use a scaled rate."""
    def one(lr: float) -> optax.GradientTransformation:
        adam = optax.adam(lr)
        return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), adam) if cfg.grad_clip else adam

    if cfg.mode not in ("dfa", "optical-dfa") or cfg.body_lr_scale == 1.0:
        return one(cfg.lr)
    head = ("ln_f_g", "ln_f_b", "unembed")
    labels = lambda p: {k: jax.tree_util.tree_map(lambda _, k=k: "head" if k in head else "body", v)  # noqa: E731
                        for k, v in p.items()}
    return optax.multi_transform({"head": one(cfg.lr), "body": one(cfg.lr * cfg.body_lr_scale)}, labels)


def read_metrics(out_dir: str | Path) -> list[dict]:
    p = Path(out_dir) / METRICS
    if not p.is_file():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def _device_power_w(device: Device) -> float:
    if device.identity.is_simulated:
        with contextlib.suppress(Exception):
            return float(device.sim_config().electrical_power_w)
    return DEFAULT_DEVICE_POWER_W


def train_lm(
    cfg: LMConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    device: Device | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    connect: Callable[[str], Device] | None = None,
    corpus: corpus_mod.Corpus | None = None,
) -> LMResult:
    """Train (or continue) a run into ``out_dir``; see the module docstring.

    ``device``: an open device for ``optical-dfa`` (left open); without it ``cfg.device`` is
    opened with ``connect`` (default :func:`drivers.connect`) and closed at the end. ``corpus``:
    an already loaded corpus (must match ``cfg.dataset``/``cfg.text``). Raises
    :class:`LMTrainingInterrupted` on a device failure (checkpoint and metrics kept).
    """
    say = log or (lambda s: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / CHECKPOINT
    if resume and ckpt_path.is_file():
        _check_resume(LMConfig.model_validate_json((out / CONFIG).read_text()), cfg)
    elif ckpt_path.is_file():
        raise LMTrainingError(f"{out} already holds a run (checkpoint {ckpt_path}); pass --resume to "
                              "continue it or choose another --out")
    else:
        resume = False
    tcfg = cfg.transformer()  # validates d_model % n_heads before anything is written
    checkpoint.atomic_write_text(out / CONFIG, cfg.model_dump_json(indent=2))

    data = corpus or corpus_mod.load_corpus(cfg.dataset, cfg.text)
    heldout = corpus_mod.heldout_windows(data, cfg.context, cfg.eval_windows)
    heldout_chars = corpus_mod.n_chars(heldout[:, 1:])
    align_tokens = jnp.asarray(heldout[: cfg.alignment_windows])
    flops = flops_mod.training_flops_per_token(cfg.mode, cfg.d_model, cfg.n_blocks, cfg.context,
                                               corpus_mod.VOCAB_SIZE)
    tokens_per_step = cfg.batch_size * cfg.context

    key = jax.random.PRNGKey(cfg.seed)
    k_init, k_fb = jax.random.split(key)
    params = tf.init(tcfg, k_init)
    opt = make_optimizer(cfg)
    opt_state = opt.init(params)
    steps = LMSteps(tcfg, opt, cfg.feedback.normalization)
    meta: dict = {}
    if resume:
        (params, opt_state), meta = checkpoint.load(ckpt_path, (params, opt_state))
    start = int(meta.get("step", 0))
    result = LMResult(cfg, out, corpus=data.describe(), unigram_bpc=corpus_mod.unigram_bpc(data))
    own_device = False
    feedback: DigitalFeedback | OpticalFeedback | None = None
    power_w = 0.0
    settings_dump: dict | None = None
    t_start = time.perf_counter()
    try:
        if cfg.mode == "dfa":
            feedback = DigitalFeedback(k_fb, steps.n_feedback, tcfg.vocab)
        elif cfg.mode == "optical-dfa":
            if device is None:
                if connect is None:
                    import drivers

                    connect = drivers.connect
                device = connect(cfg.device)
                own_device = True
            feedback = OpticalFeedback(device, steps.n_feedback, tcfg.vocab, cfg.feedback)
            stored = meta.get("device")
            settings_dump = feedback.setup(stored["settings"] if stored else None)
            if stored and device.identity.is_simulated:
                device.sync_clock(int(stored["frames_total"]), float(stored["device_time_s"]))
            power_w = _device_power_w(device)
            if feedback.exposure is not None:
                e = feedback.exposure
                say(f"auto-exposure: {e.macro_pixel_mirrors}x{e.macro_pixel_mirrors}-mirror macro-pixels, "
                    f"{e.exposure_us:.0f} us ({e.frames} frames)")
        history = [r for r in read_metrics(out) if r["step"] <= start]
        checkpoint.atomic_write_text(out / METRICS, "".join(json.dumps(r) + "\n" for r in history))
        result.metrics = history
        say(f"{cfg.mode}: {data.describe()['train_bytes']} train bytes, unigram baseline "
            f"{result.unigram_bpc:.3f} bpc; {tokens_per_step} tokens/step, "
            f"{flops.total * tokens_per_step / 1e9:.2f} GFLOP/step digital")
        step = start
        while step < cfg.steps:
            stop = min(cfg.steps, (step // cfg.eval_every + 1) * cfg.eval_every)
            rec, params, opt_state = _run_period(cfg, data, steps, feedback, device, params, opt_state,
                                                 step, stop, progress)
            step = stop
            rec.update(_evaluate(cfg, steps, feedback, params, heldout, heldout_chars, align_tokens, step))
            prev = history[-1] if history else {}
            rec["tokens"] = step * tokens_per_step
            rec["flops_per_token"] = flops.as_dict()
            rec["flops_total"] = rec["tokens"] * flops.total
            rec["device_energy_j"] = rec["device_time_s"] * power_w
            for k in ("device_time_s", "device_energy_j", "wall_s", "frames"):
                rec[f"{k}_total"] = prev.get(f"{k}_total", 0.0) + rec[k]
            rec["unigram_bpc"] = result.unigram_bpc
            history.append(rec)
            with (out / METRICS).open("a") as f:
                f.write(json.dumps(rec) + "\n")
            checkpoint.save(ckpt_path, (params, opt_state), _meta(cfg, step, device if cfg.mode ==
                                                                   "optical-dfa" else None, settings_dump))
            _plot(history, out / CURVES, f"{cfg.mode} Transformer on {cfg.dataset}", result.unigram_bpc)
            say(_summary(rec))
    except DriverError as err:
        done = int(result.metrics[-1]["step"]) if result.metrics else 0
        raise LMTrainingInterrupted(
            f"device failure after step {done}: {type(err).__name__}: {err}. Training stopped; the "
            f"checkpoint of step {done} and the metrics are kept in {out} - fix the device and run again "
            "with --resume to continue", done) from err
    finally:
        if own_device and device is not None:
            with contextlib.suppress(DriverError):
                device.close()
    result.wall_s = time.perf_counter() - t_start
    return result


def _check_resume(stored: LMConfig, cfg: LMConfig) -> None:
    a, b = stored.model_dump(), cfg.model_dump()
    diff = [k for k in a if k not in RESUME_MAY_CHANGE and a[k] != b[k]]
    if diff:
        detail = ", ".join(f"{k}: stored {a[k]!r}, given {b[k]!r}" for k in diff)
        raise LMTrainingError(f"--resume with a different configuration ({detail}); only "
                              f"{', '.join(RESUME_MAY_CHANGE)} may change")


def _run_period(cfg, data, steps, feedback, device, params, opt_state, start, stop, progress):
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    frames0 = device.frames_acquired if device is not None else 0
    dtime0 = device.device_time_s if device is not None else 0.0
    sat0 = getattr(feedback, "saturation_warnings", 0)
    if feedback is not None and start % cfg.eval_every == 0:
        feedback.begin_epoch()
    losses = []
    bar = tqdm(total=stop - start, desc=f"{cfg.mode} steps {start + 1}-{stop}/{cfg.steps}",
               disable=not progress, leave=False, unit="step")
    try:
        for s in range(start, stop):
            starts = corpus_mod.window_starts(data.train.size, cfg.context, cfg.batch_size,
                                              np.random.default_rng([cfg.seed, s]))
            batch = lm_batch(corpus_mod.windows(data.train, starts, cfg.context))
            st = steps.steps
            if cfg.mode == "bp":
                params, opt_state, loss, _ = st.bp_step(params, opt_state, batch)
            else:
                loss, _, e, wsum, vjp = st.forward_error(params, batch)
                if cfg.mode == "shallow":
                    params, opt_state = st.shallow_step(params, opt_state, vjp, e, wsum)
                else:
                    rng = np.random.default_rng([cfg.seed, s, _ENCODING_STREAM])
                    fb = _project(feedback, e, rng)  # the one device call of this step
                    params, opt_state = st.dfa_step(params, opt_state, vjp, e, wsum, fb)
            losses.append(loss)
            bar.update(1)
            if s % 10 == 9:
                bar.set_postfix(bpc=f"{float(loss) / math.log(2):.3f}")
    finally:
        bar.close()
    wall = time.perf_counter() - t0
    n = stop - start
    return {
        "step": stop,
        "mode": cfg.mode,
        "train_loss_nats": float(jnp.stack(losses).mean()),
        "frames": (device.frames_acquired - frames0) if device is not None else 0,
        "device_time_s": (device.device_time_s - dtime0) if device is not None else 0.0,
        "saturation_warnings": getattr(feedback, "saturation_warnings", 0) - sat0,
        "wall_s": wall,
        "step_time_ms": 1e3 * wall / max(n, 1),
        "frames_per_step": ((device.frames_acquired - frames0) / n) if device is not None else 0.0,
    }, params, opt_state


def _evaluate(cfg, steps, feedback, params, heldout, heldout_chars, align_tokens, step) -> dict:
    total = 0.0
    for lo in range(0, heldout.shape[0], 16):
        s, _ = steps.eval_nll(params, jnp.asarray(heldout[lo : lo + 16]))
        total += float(s)
    out: dict[str, Any] = {"heldout_bpc": total / math.log(2) / heldout_chars, "alignment": None}
    if feedback is not None:
        batch = lm_batch(align_tokens)
        _, _, e, _, _ = steps.steps.forward_error(params, batch)
        fb = _project(feedback, e, np.random.default_rng([cfg.seed, step, _ALIGNMENT_STREAM]))
        cu, cm, _ = (np.asarray(v, dtype=np.float64) for v in steps.steps.alignment(params, batch, fb))
        out["alignment"] = [{"block": i, "point": n, "cos_update": float(cu[i]),
                             "cos_token_mean": float(cm[i])} for i, n in enumerate(steps.layout.names)]
    return out


def _project(feedback, e: jnp.ndarray, rng: np.random.Generator) -> jnp.ndarray:
    """Project the per-token errors e (b, T, V) in one call: (b·T, V) rows -> (b, T, m)."""
    b, t, v = e.shape
    return jnp.asarray(feedback.project(np.asarray(e).reshape(b * t, v), rng)).reshape(b, t, -1)


def _meta(cfg: LMConfig, step: int, device: Device | None, settings: dict | None) -> dict:
    meta: dict[str, Any] = {"format": 1, "step": step, "config": cfg.model_dump(mode="json")}
    if device is not None:
        st = device.status()
        meta["device"] = {"frames_total": int(st.frames_total), "device_time_s": float(st.device_time_s),
                          "settings": settings, "resource": device.resource}
    return meta


def _plot(history: list[dict], path: Path, title: str, unigram: float) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    st = [r["step"] for r in history]
    ax[0].plot(st, [r["heldout_bpc"] for r in history], marker="o", label="held-out")
    ax[0].plot(st, [r["train_loss_nats"] / math.log(2) for r in history], marker=".",
               label="train (bits/byte)")
    ax[0].axhline(unigram, color="grey", ls="--", label="unigram")
    ax[0].set(xlabel="step", ylabel="bits per character")
    if history[-1].get("alignment"):
        for i in range(len(history[-1]["alignment"])):
            ax[1].plot(st, [r["alignment"][i]["cos_update"] if r.get("alignment") else np.nan
                            for r in history], marker="o", label=f"block {i}")
    ax[1].set(xlabel="step", ylabel="cos(DFA update, BP gradient)", ylim=(-0.1, 1.0))
    for a in ax:
        a.grid(alpha=0.3)
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _summary(r: dict) -> str:
    al = r.get("alignment")
    al_s = " align " + "/".join(f"{a['cos_update']:.2f}" for a in al) if al else ""
    dev = f" frames {r['frames']} ({r['device_time_s']:.1f} s device)" if r["frames"] else ""
    return (f"step {r['step']}: held-out {r['heldout_bpc']:.3f} bpc{al_s}{dev} "
            f"[{r['step_time_ms']:.0f} ms/step]")
