"""The training loop: modes ``bp``, ``dfa``, ``optical-dfa``, ``pfa`` and ``shallow`` for any model of
:mod:`host.train.models` (``mlp``, ``cnn``, ``gcn``) on one pipeline.

Before the first step the model is traced once (:func:`host.train.points.discover_points`): its
feedback points give the size m of the one projection per step (the camera ROI). Per step (b samples,
or the nodes of a graph): a jitted forward pass gives the output error e (b, C) and the VJP of the
tapped forward pass; the projection F (b, m) comes from the digital matrix (``dfa``) or from ONE
device call (``optical-dfa``: ``device.linear_transform`` of the ternarized error, at most 4 b
frames); a second jitted function splits F across the points, runs the VJP and applies the optax
update. ``bp`` is one jitted value-and-grad step, ``shallow`` trains the output layer only, ``pfa``
is :class:`host.train.pfa.PFASteps` (its R matrices are checkpointed with the parameters).

Per epoch: training, the alignment on a held-out batch (first ``alignment_batch`` test samples; a
graph's validation nodes),
the test accuracy, a metrics line in ``OUT/metrics.jsonl``, an atomic checkpoint
``OUT/checkpoint.npz`` and the curves ``OUT/curves.png``. The data order of epoch k is a
permutation drawn from ``numpy.random.default_rng([seed, k])``, so a resumed run sees the same
batches. On a simulated device the checkpoint also stores the device's frame counter and clock
(its noise is keyed by them) and resuming restores them with ``Device.sync_clock``.
"""

from __future__ import annotations

import contextlib
import json
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
from host.privacy.config import PrivacyConfig

from . import checkpoint
from .data import DatasetError
from .feedback import DigitalFeedback, FeedbackConfig, OpticalFeedback, layer_scales
from .pfa import PFASteps, discover_linears
from .plots import plot_runs
from .points import discover_points
from .steps import Steps
from .tasks import TaskError, build_task

MODES = ("bp", "dfa", "optical-dfa", "pfa", "shallow")
CHECKPOINT = "checkpoint.npz"
METRICS = "metrics.jsonl"
CONFIG = "config.json"
CURVES = "curves.png"
#: sub-streams of the per-step Generators (encoding of the error, alignment batch)
_ENCODING_STREAM, _ALIGNMENT_STREAM = 0x454E, 0x414C
#: fields a resumed run may change (everything else must match the stored configuration)
RESUME_MAY_CHANGE = ("epochs", "device")


class TrainConfig(BaseModel):
    """Everything that defines a run (stored in ``OUT/config.json``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    mode: Literal["bp", "dfa", "optical-dfa", "pfa", "shallow"] = "optical-dfa"
    model: Literal["mlp", "cnn", "gcn", "cnn-opu"] = "mlp"
    dataset: Literal["digits", "fashion-mnist", "mnist", "csbm", "cora", "citeseer"] = "digits"
    data_dir: str | None = None
    max_train_samples: int | None = Field(None, ge=1, description="use only the first N training samples")
    hidden: tuple[int, ...] = Field((256, 256), description="mlp: hidden widths")
    channels: tuple[int, ...] = Field((32, 64), description="cnn: channels of the conv blocks")
    dense_width: int = Field(128, ge=1, description="cnn: width of the dense layer")
    cnn_feedback: Literal["blocks", "dense"] = Field(
        "blocks", description="cnn: feedback points after every block, or after the dense layer only "
                              "(the conv blocks then get that point's signal backpropagated through it)")
    gcn_hidden: int = Field(16, ge=1, description="gcn: hidden units")
    graph_steps_per_epoch: int = Field(10, ge=1, description="gcn: full-batch steps per epoch")
    activation: Literal["tanh", "relu"] | None = Field(None, description="None: tanh (mlp, cnn), relu (gcn)")
    batch_size: int = Field(128, ge=1)
    epochs: int = Field(10, ge=1)
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant", description="cosine: lr decays to 0 over the run's steps (a private run's last "
                                "iterates then carry less of the injected noise)")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty added to the gradients (coupled)")
    seed: int = Field(0, ge=0)
    device: str = "sim"
    feedback: FeedbackConfig = Field(default_factory=FeedbackConfig)
    alignment_batch: int = Field(256, ge=2)
    pfa_k: int = Field(10, ge=1, description="pfa: B is N_out x k N_out")
    pfa_decay: float = Field(1e-3, ge=0, description="pfa: weight decay lambda of R")
    # [privacy seam] differentially private DFA (host/privacy, docs/privacy.md); None = not private
    privacy: PrivacyConfig | None = None
    # issue 13 (host/robust): inputs in [0, 1] for robustness, the optical layer of cnn-opu, ROPUST init
    input_scale: Literal["standardized", "pixels"] = Field(
        "standardized", description="standardized features, or raw pixels in [0, 1] (adversarial robustness)")
    optical_outputs: int = Field(1024, ge=1, description="cnn-opu: camera pixels m of the optical layer")
    surrogate_seed: int = Field(0, ge=0, description="cnn-opu: seed of the defender's backward matrix")
    init_from: str | None = Field(None, description="cnn-opu: a cnn run directory whose conv and dense "
                                                    "weights initialise the backbone (ROPUST fine-tuning)")
    adv_train_eps: float | None = Field(None, gt=0, le=1, description="PGD adversarial training (mlp, "
                                        "cnn; pixels): L-inf radius of the training examples; None: clean")
    adv_train_steps: int = Field(7, ge=1, description="PGD adversarial training: attack steps per batch")

    @property
    def act(self) -> str:
        # DFA on the conv net with relu lets the activations grow without bound (measured: training loss 5.4
        # after 25 Fashion-MNIST steps, 22 with the optical feedback); tanh keeps them bounded
        return self.activation or ("relu" if self.model == "gcn" else "tanh")


class TrainingError(RuntimeError):
    """The run cannot start or continue (the message says why and what to do)."""


class TrainingInterrupted(TrainingError):
    """The device failed mid-run; ``epochs_done`` epochs are safe in the checkpoint."""

    def __init__(self, message: str, epochs_done: int) -> None:
        super().__init__(message)
        self.epochs_done = epochs_done


@dataclass
class TrainResult:
    config: TrainConfig
    out_dir: Path
    metrics: list[dict] = field(default_factory=list)
    exposure: dict | None = None
    wall_s: float = 0.0
    points: list[dict] = field(default_factory=list)  # the feedback points: name, per-sample shape, size
    params: Any = None  # the trained parameters (last epoch)
    privacy_plan: dict | None = None  # [privacy seam] the plan of a private run
    canaries: Any = None  # [privacy seam] the audit's canaries (host.privacy.Canaries) or None
    stopped_reason: str | None = None

    @property
    def final(self) -> dict:
        return self.metrics[-1]


def make_optimizer(cfg: TrainConfig, total_steps: int = 1) -> optax.GradientTransformation:
    """The run's optimizer; ``total_steps`` (epochs x steps per epoch) sets the length of a cosine
    schedule (the optimizer state's structure does not depend on it)."""
    lr = cfg.lr
    if cfg.lr_schedule == "cosine":
        lr = optax.cosine_decay_schedule(cfg.lr, max(1, int(total_steps)))
    opt = optax.adam(lr) if cfg.optimizer == "adam" else optax.sgd(lr, momentum=cfg.momentum or None)
    if cfg.weight_decay > 0:  # L2 penalty on every parameter, added to the (BP, DFA or PFA) gradient
        opt = optax.chain(optax.add_decayed_weights(cfg.weight_decay), opt)
    return opt


def read_metrics(out_dir: Path) -> list[dict]:
    p = Path(out_dir) / METRICS
    if not p.is_file():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def train(
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    device: Device | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    connect: Callable[[str], Device] | None = None,
) -> TrainResult:
    """Train (or continue) a run into ``out_dir``; see the module docstring.

    ``device``: an open device for ``optical-dfa`` (left open); without it ``cfg.device`` is
    opened with ``connect`` (default :func:`drivers.connect`) and closed at the end.
    Raises :class:`TrainingInterrupted` on a device failure (checkpoint and metrics kept).
    """
    say = log or (lambda s: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / CHECKPOINT
    if resume and ckpt_path.is_file():
        stored = TrainConfig.model_validate_json((out / CONFIG).read_text())
        _check_resume(stored, cfg)
    elif ckpt_path.is_file():
        raise TrainingError(f"{out} already holds a run (checkpoint {ckpt_path}); pass --resume to "
                            "continue it or choose another --out")
    else:
        resume = False
    checkpoint.atomic_write_text(out / CONFIG, cfg.model_dump_json(indent=2))

    try:
        task = build_task(cfg)
    except (TaskError, DatasetError) as err:
        raise TrainingError(str(err)) from err
    canaries = None
    if cfg.privacy is not None:  # [privacy seam] model/mode/activation checks, audit canaries
        from host.privacy import session as privacy_session

        try:
            privacy_session.check_train_config(cfg.mode, cfg.act, cfg.model)
            task.data, canaries = privacy_session.prepare_data(task.data, cfg.privacy)
        except ValueError as err:
            raise TrainingError(str(err)) from None
    key = jax.random.PRNGKey(cfg.seed)
    k_init, k_fb = jax.random.split(key)
    example = task.example()
    params = task.model.init(k_init, example.inputs)
    if cfg.init_from is not None and not resume:  # issue 13: ROPUST, fine-tune a pre-trained backbone
        from host.robust.finetune import load_backbone

        params = load_backbone(cfg.init_from, params)
    opt = make_optimizer(cfg, cfg.epochs * task.n_steps)
    if cfg.privacy is not None and cfg.privacy.hidden_lr_scale != 1.0:  # [privacy seam] slow hidden layers
        last = len(params) - 1
        hidden_mask = [jax.tree_util.tree_map(lambda _, h=(j < last): h, p) for j, p in enumerate(params)]
        opt = optax.chain(opt, optax.masked(optax.scale(cfg.privacy.hidden_lr_scale), hidden_mask))
    opt_state = opt.init(params)
    # the feedback points, found by tracing once (no computation): names, shapes, total size m
    layout = discover_points(task.model.apply, params, example.inputs, lead_ndim=task.lead_ndim,
                             require=cfg.mode != "bp")
    m = layout.total
    steps = Steps(task.model.apply, opt, layout, layer_scales(cfg.feedback, layout.sizes, task.n_classes))
    pfa, aux = None, {}
    if cfg.mode == "pfa":
        linears = discover_linears(task.model.apply, params, example.inputs)
        if len(linears) < 2:
            raise TrainingError(f"--mode pfa needs a model built of named pfa.linear maps (mlp, cnn); "
                                f"{cfg.model} has {len(linears)}")
        pfa = PFASteps(task.model.apply, opt, linears, k_fb, cfg.pfa_k, cfg.pfa_decay)
        aux = pfa.init_aux()

    own_device = False
    feedback: DigitalFeedback | OpticalFeedback | None = None
    meta: dict = {}
    if resume:
        (params, opt_state, aux), meta = checkpoint.load(ckpt_path, (params, opt_state, aux))
    start_epoch = int(meta.get("epoch", 0))
    result = TrainResult(cfg, out, points=layout.as_dict(), canaries=canaries)
    privacy = None
    t_start = time.perf_counter()
    meta_device_settings: dict | None = None
    needs_device = getattr(task, "needs_device", False)  # issue 13: the device in the forward path
    try:
        if needs_device:
            if device is None:
                if connect is None:
                    import drivers

                    connect = drivers.connect
                device = connect(cfg.device)
                own_device = True
            stored_dev = meta.get("device")
            meta_device_settings = task.attach(device, stored_dev["settings"] if stored_dev else None)
            if stored_dev:
                _restore_clock(device, stored_dev)
        if cfg.mode == "dfa":
            feedback = DigitalFeedback(k_fb, m, task.n_classes)
        elif cfg.mode == "optical-dfa":
            if device is None:
                if connect is None:
                    import drivers

                    connect = drivers.connect
                device = connect(cfg.device)
                own_device = True
            feedback = OpticalFeedback(device, m, task.n_classes, cfg.feedback)
            stored_dev = meta.get("device")
            settings = feedback.setup(stored_dev["settings"] if stored_dev else None)
            if feedback.exposure is not None:
                result.exposure = feedback.exposure.as_dict()
                e = feedback.exposure
                say(f"auto-exposure: {e.macro_pixel_mirrors}x{e.macro_pixel_mirrors}-mirror macro-pixels, "
                    f"{e.exposure_us:.0f} us; all-on frames mean {e.all_on_mean_dn:.1f} DN, 99.9th pct "
                    f"{e.all_on_p999_dn:.0f} DN of {e.adc_max_dn} ({e.frames} frames)")
            if stored_dev:
                _restore_clock(device, stored_dev)
            meta_device_settings = settings
        if cfg.privacy is not None:  # [privacy seam] wrap the feedback, measure, plan (or refuse)
            n_train = task.data.x_train.shape[0]
            privacy = _privacy_session(cfg, feedback, device, m, task.n_classes, n_train, say,
                                       out if resume else None)
            privacy.write_plan(out)
            result.privacy_plan = privacy.plan.as_dict()
            feedback = privacy.feedback

        history = [r for r in read_metrics(out) if r["epoch"] <= start_epoch]
        checkpoint.atomic_write_text(out / METRICS, "".join(json.dumps(r) + "\n" for r in history))
        result.metrics = history
        for epoch in range(start_epoch, cfg.epochs):
            if privacy is not None:  # [privacy seam] budget stop before an epoch would exceed the target
                ok, eps_next = privacy.may_run_epoch(epoch)
                if not ok:
                    result.stopped_reason = (f"privacy budget: epoch {epoch + 1} would bring epsilon to "
                                             f"{eps_next:.4g} > {cfg.privacy.epsilon:g}; stopped after "
                                             f"epoch {epoch} (checkpoint kept)")
                    say(result.stopped_reason)
                    break
            rec, params, opt_state, aux = _run_epoch(cfg, epoch, task, steps, pfa, feedback, device,
                                                     (params, opt_state, aux), progress)
            if privacy is not None:  # [privacy seam] epsilon(t) next to accuracy and alignment
                rec["privacy"] = privacy.epoch_record(epoch + 1)
            history.append(rec)
            with (out / METRICS).open("a") as f:
                f.write(json.dumps(rec) + "\n")
            dev_meta = device if cfg.mode == "optical-dfa" or needs_device else None
            meta = _meta(cfg, epoch + 1, k_init, k_fb, dev_meta,
                         meta_device_settings)
            checkpoint.save(ckpt_path, (params, opt_state, aux), meta)
            plot_runs({cfg.mode: history}, out / CURVES, title=f"{cfg.model} {cfg.mode} on {cfg.dataset}")
            say(_summary(rec))
    except DriverError as err:
        done = len(result.metrics)
        raise TrainingInterrupted(
            f"device failure during epoch {done + 1}: {type(err).__name__}: {err}. Training stopped; "
            f"the checkpoint of epoch {done} and the metrics are kept in {out} - fix the device and run "
            "again with --resume to continue", done) from err
    finally:
        if own_device and device is not None:
            with contextlib.suppress(DriverError):
                device.close()
    result.wall_s = time.perf_counter() - t_start
    result.params = params
    return result


def _privacy_session(cfg, feedback, device, m, n_classes, n_train, say, resume_dir=None):
    """[privacy seam] host.privacy.PrivacySession for this run (a resumed run keeps its stored noise
    multiplier); a refused plan is a TrainingError."""
    from host.privacy import session as privacy_session
    from host.privacy.certify import CertificationError
    from host.privacy.mechanism import NoiseShortfall
    from host.privacy.plan import PlanRefused

    try:
        return privacy_session.PrivacySession(
            cfg.privacy, feedback, n_outputs=m, n_classes=n_classes, n_train=n_train,
            batch_size=cfg.batch_size, epochs=cfg.epochs, optical=cfg.mode == "optical-dfa", device=device,
            share_repeats=cfg.feedback.share_repeats, say=say,
            stored_plan=privacy_session.stored_plan(resume_dir) if resume_dir is not None else None)
    except (PlanRefused, CertificationError, NoiseShortfall) as err:
        raise TrainingError(f"privacy plan refused: {err}") from None


def _check_resume(stored: TrainConfig, cfg: TrainConfig) -> None:
    a, b = stored.model_dump(), cfg.model_dump()
    diff = [k for k in a if k not in RESUME_MAY_CHANGE and a[k] != b[k]]
    if diff:
        detail = ", ".join(f"{k}: stored {a[k]!r}, given {b[k]!r}" for k in diff)
        raise TrainingError(f"--resume with a different configuration ({detail}); only "
                            f"{', '.join(RESUME_MAY_CHANGE)} may change")


def _restore_clock(device: Device, stored: dict) -> None:
    """Put a simulated device's frame counter and clock where the checkpoint left them."""
    if not device.identity.is_simulated:
        return  # hardware noise is not reproducible anyway; the run continues statistically the same
    device.sync_clock(int(stored["frames_total"]), float(stored["device_time_s"]))


def _run_epoch(cfg, epoch, task, steps, pfa, feedback, device, state, progress):
    from tqdm.auto import tqdm

    params, opt_state, aux = state
    t0 = time.perf_counter()
    frames0 = device.frames_acquired if device is not None else 0
    dtime0 = device.device_time_s if device is not None else 0.0
    sat0 = getattr(feedback, "saturation_warnings", 0)
    if feedback is not None:
        feedback.begin_epoch()
    n_steps = task.n_steps
    private = cfg.privacy is not None  # [privacy seam] begin_epoch above re-measured Delta and sigma_min
    losses, corrects, counts = [], [], []
    bar = tqdm(total=n_steps, desc=f"{cfg.model} {cfg.mode} epoch {epoch + 1}/{cfg.epochs}",
               disable=not progress, leave=False, unit="step")
    try:
        for s, batch in enumerate(_batches(cfg, task, epoch)):
            if batch is None:  # an empty Poisson sample: nothing to train on, still one composition
                bar.update(1)
                continue
            if hasattr(task, "prepare"):  # issue 13: the optical forward, between two jitted halves
                batch = task.prepare(params, batch)
            if cfg.mode == "bp":
                params, opt_state, loss, correct = steps.bp_step(params, opt_state, batch)
            elif cfg.mode == "pfa":
                params, opt_state, aux, loss, correct = pfa.step(params, opt_state, aux, batch)
            else:
                loss, correct, e, wsum, vjp = steps.forward_error(params, batch)
                if cfg.mode == "shallow":
                    params, opt_state = steps.shallow_step(params, opt_state, vjp, e, wsum)
                else:
                    # the one device call of this step; its encoding noise is keyed by the step
                    rng = np.random.default_rng([cfg.seed, epoch, s, _ENCODING_STREAM])
                    if private:  # [privacy seam] noisy feedback and noisy output-layer error
                        fb, top = feedback.project(e, batch.y, rng)
                        params, opt_state = steps.dfa_step_private(
                            params, opt_state, vjp, jnp.asarray(top), wsum, jnp.asarray(fb))
                    else:
                        fb = jnp.asarray(feedback.project(e, rng))
                        params, opt_state = steps.dfa_step(params, opt_state, vjp, e, wsum, fb)
            losses.append(loss)
            corrects.append(correct)
            counts.append(jnp.sum(batch.w))
            bar.update(1)
            if s % 10 == 9:
                bar.set_postfix(loss=f"{float(loss):.3f}")
    finally:
        bar.close()
    train_wall = time.perf_counter() - t0
    frames_train = (device.frames_acquired - frames0) if device is not None else 0
    align = None
    if feedback is not None:
        al = task.alignment_batch()
        if hasattr(task, "prepare"):
            al = task.prepare(params, al)
        _, _, e_al, _, _ = steps.forward_error(params, al)
        rng_al = np.random.default_rng([cfg.seed, epoch, _ALIGNMENT_STREAM])
        fb = feedback.project(e_al, al.y, rng_al)[0] if private else feedback.project(e_al, rng_al)
        fb = jnp.asarray(fb)
        cu, cm, cs = (np.asarray(v, dtype=np.float64) for v in steps.alignment(params, al, fb))
        align = [
            {"layer": j + 1, "point": name, "cos_update": float(cu[j]),
             "angle_update_deg": float(np.degrees(np.arccos(np.clip(cu[j], -1, 1)))),
             "cos_sample_mean": float(cm[j]), "cos_sample_std": float(cs[j])}
            for j, name in enumerate(steps.layout.names)
        ]
    elif pfa is not None:
        cu, path = (np.asarray(v, np.float64) for v in pfa.alignment(params, aux, task.alignment_batch()))
        align = [
            {"layer": j + 1, "point": name, "cos_update": float(cu[j]),
             "angle_update_deg": float(np.degrees(np.arccos(np.clip(cu[j], -1, 1)))),
             "path_alignment": None if np.isnan(path[j]) else float(path[j])}
            for j, name in enumerate(pfa.shapes)
        ]
    evaluation = task.evaluate(steps, params)
    rec: dict[str, Any] = {
        "epoch": epoch + 1,
        "mode": cfg.mode,
        "model": cfg.model,
        "train_loss": float(jnp.stack(losses).mean()),
        "train_accuracy": float(jnp.stack(corrects).sum() / jnp.stack(counts).sum()),
        **evaluation,
        "alignment": align,
        "frames": (device.frames_acquired - frames0) if device is not None else 0,
        "frames_train": frames_train,
        "device_time_s": (device.device_time_s - dtime0) if device is not None else 0.0,
        "frames_total": device.status().frames_total if device is not None else 0,
        "saturation_warnings": getattr(feedback, "saturation_warnings", 0) - sat0,
        "wall_s": time.perf_counter() - t0,
        "step_time_ms": 1e3 * train_wall / max(n_steps, 1),
    }
    return rec, params, opt_state, aux


def _batches(cfg: TrainConfig, task, epoch: int):
    """The epoch's batches: the task's own (a shuffled partition), or Poisson samples of the training set
    ([privacy seam]: every record joins each step independently with probability q = b/N; an empty
    sample is yielded as None)."""
    if cfg.privacy is None or cfg.privacy.composition != "poisson":
        yield from task.batches(cfg.seed, epoch)
        return
    from host.privacy.session import poisson_batches

    x, y = task.data.x_train, task.data.y_train
    n = x.shape[0]
    for idx in poisson_batches(cfg.seed, epoch, n, cfg.batch_size / n, task.n_steps):
        yield task._batch(x[idx], y[idx]) if idx.size else None


def _meta(cfg, epoch, k_init, k_fb, device, settings) -> dict:
    meta: dict[str, Any] = {
        "format": 1,
        "epoch": epoch,
        "config": cfg.model_dump(mode="json"),
        "data_order_seed": cfg.seed,
        "rng_keys": {"init": np.asarray(jax.random.key_data(k_init)).tolist(),
                     "feedback": np.asarray(jax.random.key_data(k_fb)).tolist()},
    }
    if device is not None:
        st = device.status()
        meta["device"] = {"frames_total": int(st.frames_total), "device_time_s": float(st.device_time_s),
                          "settings": settings, "resource": device.resource}
    return meta


def _summary(r: dict) -> str:
    al = r.get("alignment")
    al_s = " align " + "/".join(f"{a['cos_update']:.2f}" for a in al) if al else ""
    dev = f" frames {r['frames']} ({r['device_time_s']:.1f} s device)" if r["frames"] else ""
    sat = f" SATURATED x{r['saturation_warnings']}" if r["saturation_warnings"] else ""
    return (f"epoch {r['epoch']}: loss {r['train_loss']:.4f} test acc {100 * r['test_accuracy']:.2f} %"
            f"{al_s}{dev} [{r['wall_s']:.1f} s]{sat}")

