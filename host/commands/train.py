"""``opu train``: train a network by BP, DFA, optical DFA (on a device) or shallow learning.

    opu train --mode optical-dfa --device sim --dataset digits --epochs 10 --seed 0 --out runs/odfa
    opu train --mode optical-dfa --out runs/odfa --epochs 20 --resume     # continue the same run
    opu train --model cnn --mode dfa --dataset fashion-mnist --out runs/cnn_dfa
    opu train --model cnn-opu --mode dfa --dataset fashion-mnist --input-scale pixels \
        --init-from runs/cnn_bp --out runs/cnn_opu      # ROPUST: the optical layer in the forward path
    opu train --model cnn --mode bp --dataset fashion-mnist --input-scale pixels \
        --adv-train-eps 0.1 --out runs/cnn_pgdat        # PGD adversarial training (a robust backbone)
    opu train --model gcn --mode optical-dfa --dataset csbm --lr 0.01 --weight-decay 5e-4 --out runs/gcn
    opu train --model transformer --dataset pystdlib --mode optical-dfa --steps 2000 --out runs/lm  # host/lm

Writes OUT/config.json, OUT/metrics.jsonl (one JSON line per epoch), OUT/curves.png and
OUT/checkpoint.npz (every epoch). Exit status 0 on success, 2 on a bad argument, 3 when the device
failed mid-run (the checkpoint and metrics are kept; rerun with --resume).
"""

from __future__ import annotations

import argparse
import sys

EXIT_DEVICE_FAILURE = 3


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"--hidden takes comma-separated integers like 256,256, got {text!r}") from err
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"--hidden needs at least one width >= 1, got {text!r}")
    return widths


def register(subparsers: argparse._SubParsersAction) -> None:
    from host.commands import train_lm

    p = subparsers.add_parser(
        "train",
        help="train an MLP, conv net or GCN with BP, DFA, optical DFA (device in the loop), PFA or shallow",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    register_training_arguments(p)
    train_lm.add_arguments(p)
    p.set_defaults(func=run)


def register_training_arguments(p: argparse.ArgumentParser) -> None:
    """The training options of the trainer's models (shared with ``opu privacy-audit``)."""
    from host.commands import train_lm
    from host.train import DATASETS, MODELS, MODES
    from host.train.graphs import GRAPH_DATASETS

    p.add_argument("--mode", choices=MODES, default="optical-dfa")
    p.add_argument("--device", default="sim",
                   help='device URI for optical-dfa: "sim", "sim:CONFIG.json" or a VISA resource '
                        '(default: sim)')
    p.add_argument("--model", choices=(*MODELS, "cnn-opu", "transformer"), default="mlp",
                   help="mlp (--hidden), cnn (--channels, --dense-width), gcn (--gcn-hidden, graph "
                        "datasets), cnn-opu (conv net with the optical layer in its forward path, issue 13), "
                        "transformer (byte-level language model, host/lm)")
    p.add_argument("--dataset", choices=(*DATASETS, *GRAPH_DATASETS, *train_lm.LM_DATASETS), default=None,
                   help="default: digits (mlp, cnn), csbm (gcn)")
    p.add_argument("--data-dir", default=None,
                   help="directory with the IDX files (mnist, fashion-mnist) or NAME.content/NAME.cites "
                        "(cora, citeseer)")
    p.add_argument("--max-train-samples", type=int, default=None, help="train on the first N samples only")
    p.add_argument("--hidden", type=_widths, default=(256, 256), help="hidden widths, e.g. 256,256")
    p.add_argument("--channels", type=_widths, default=(32, 64), help="cnn: channels of the conv blocks")
    p.add_argument("--dense-width", type=int, default=128, help="cnn: width of the dense layer")
    p.add_argument("--gcn-hidden", type=int, default=16, help="gcn: hidden units")
    p.add_argument("--graph-steps-per-epoch", type=int, default=10, help="gcn: full-batch steps per epoch")
    p.add_argument("--activation", choices=("tanh", "relu"), default=None,
                   help="default: tanh (mlp, cnn), relu (gcn)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-schedule", choices=["constant", "cosine"], default="constant",
                   help="cosine: the learning rate decays to 0 over the run (useful for private runs)")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    p.add_argument("--weight-decay", type=float, default=0.0, help="L2 penalty on all parameters")
    p.add_argument("--pfa-k", type=int, default=10, help="pfa: B is N_out x k N_out")
    p.add_argument("--pfa-decay", type=float, default=1e-3, help="pfa: weight decay of R")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="run directory (metrics, curves, checkpoint)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    r = p.add_argument_group("robustness by design (cnn-opu, docs/robustness.md)")
    r.add_argument("--input-scale", choices=("standardized", "pixels"), default="standardized",
                   help="pixels: inputs in [0, 1] (needed by opu robustness)")
    r.add_argument("--optical-outputs", type=int, default=1024, help="cnn-opu: camera pixels of the layer")
    r.add_argument("--surrogate-seed", type=int, default=0, help="cnn-opu: seed of the backward matrix")
    r.add_argument("--init-from", default=None,
                   help="cnn-opu: a --model cnn run directory whose weights start the backbone (ROPUST)")
    r.add_argument("--adv-train-eps", type=float, default=None,
                   help="PGD adversarial training (mlp, cnn; --input-scale pixels): L-inf radius")
    r.add_argument("--adv-train-steps", type=int, default=7, help="PGD adversarial training: steps")
    g = p.add_argument_group("feedback (dfa, optical-dfa)")
    g.add_argument("--normalization", choices=("none", "fan_in", "fan_out"), default="fan_in")
    g.add_argument("--encoding", choices=("ternary", "bitplanes"), default="ternary",
                   help="optical-dfa: ternarized error (at most 4 frames/sample) or bit planes "
                        "(4 x precision)")
    g.add_argument("--threshold", type=float, default=0.1,
                   help="ternarization threshold (fixed and adaptive modes)")
    g.add_argument("--threshold-mode", choices=("stochastic", "fixed", "adaptive"), default="stochastic",
                   help="stochastic: unbiased sign(e) with probability |e|/max|e| (default); fixed: "
                        "|e| > threshold; adaptive: |e| > threshold x max|e| per sample")
    g.add_argument("--precision", type=int, default=6, help="bits per sign with --encoding bitplanes")
    g.add_argument("--no-share-repeats", dest="share_repeats", action="store_false",
                   help="optical-dfa: acquire every sample's own frames instead of each distinct binary "
                        "pattern of a step once (about 5x more frames; independent noise per sample)")
    g.add_argument("--exposure-target", type=float, default=0.6,
                   help="auto-exposure: 99.9th percentile of all-on frames as a fraction of the ADC range "
                        "(0 keeps the device's exposure and macro-pixels)")
    g.add_argument("--alignment-batch", type=int, default=256)
    add_privacy_arguments(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_privacy_arguments(p: argparse.ArgumentParser) -> None:
    """[privacy seam] --dp-* flags (docs/privacy.md); --dp-epsilon turns private training on."""
    g = p.add_argument_group("differential privacy (--model mlp, --mode dfa or optical-dfa; docs/privacy.md)")
    g.add_argument("--dp-epsilon", type=float, default=None, help="privacy target epsilon (turns DP on)")
    g.add_argument("--dp-delta", type=float, default=1e-5, help="delta, must be < 1/N (default 1e-5)")
    g.add_argument("--dp-composition", choices=("epoch", "poisson"), default="epoch",
                   help="epoch: shuffled disjoint batches composed once per epoch; poisson: Poisson-sampled "
                        "batches with amplification, per step")
    g.add_argument("--dp-accountant", choices=("rdp", "pld"), default="rdp")
    g.add_argument("--dp-aggregation", choices=("batch", "sample"), default=None,
                   help="batch: z = sigma sqrt(b)/Delta (default with --dp-composition epoch); sample: z = "
                        "sigma/Delta (conservative; forced with poisson)")
    g.add_argument("--dp-neighbouring", choices=("replace_one", "add_remove"), default=None,
                   help="default replace_one (add_remove with poisson)")
    g.add_argument("--dp-top-scale", type=float, default=0.5,
                   help="output-layer error released as c e, c = top_scale sqrt(m)")
    g.add_argument("--dp-no-host-noise", action="store_true",
                   help="device noise only: refuse the plan if the certified sigma_min is too small")
    g.add_argument("--dp-calibration", default=None,
                   help="calibration.json of opu calibrate (K, read noise) for a real device")


def privacy_config(args: argparse.Namespace):
    """[privacy seam] PrivacyConfig from the --dp-* flags, or None without --dp-epsilon."""
    if args.dp_epsilon is None:
        return None
    from host.privacy import PrivacyConfig

    poisson = args.dp_composition == "poisson"
    return PrivacyConfig(
        epsilon=args.dp_epsilon, delta=args.dp_delta, composition=args.dp_composition,
        accountant=args.dp_accountant, aggregation=args.dp_aggregation or ("sample" if poisson else "batch"),
        neighbouring=args.dp_neighbouring or ("add_remove" if poisson else "replace_one"),
        top_scale=args.dp_top_scale, host_noise=not args.dp_no_host_noise,
        calibration_path=args.dp_calibration, audit_canaries=getattr(args, "canaries", 0) or 0,
        audit_seed=getattr(args, "canary_seed", 12345))


def feedback_config(args: argparse.Namespace):
    """The FeedbackConfig of the parsed options (shared by every model, the transformer included)."""
    from host.train import FeedbackConfig

    return FeedbackConfig(
        normalization=args.normalization, encoding=args.encoding, threshold=args.threshold,
        threshold_mode=args.threshold_mode, precision=args.precision,
        share_repeats=args.share_repeats, exposure_target_frac=args.exposure_target or None)


def train_config(args: argparse.Namespace):
    """The TrainConfig of the parsed options (raises pydantic's ValidationError on a bad value)."""
    from host.train import TrainConfig

    return TrainConfig(
        mode=args.mode, model=args.model,
        dataset=args.dataset or ("csbm" if args.model == "gcn" else "digits"), data_dir=args.data_dir,
        max_train_samples=args.max_train_samples, hidden=args.hidden, activation=args.activation,
        channels=args.channels, dense_width=args.dense_width, gcn_hidden=args.gcn_hidden,
        graph_steps_per_epoch=args.graph_steps_per_epoch, weight_decay=args.weight_decay,
        pfa_k=args.pfa_k, pfa_decay=args.pfa_decay, input_scale=args.input_scale,
        optical_outputs=args.optical_outputs, surrogate_seed=args.surrogate_seed,
        init_from=args.init_from, adv_train_eps=args.adv_train_eps, adv_train_steps=args.adv_train_steps,
        batch_size=args.batch_size, epochs=args.epochs, optimizer=args.optimizer, lr=args.lr,
        lr_schedule=args.lr_schedule,
        momentum=args.momentum, seed=args.seed, device=args.device, alignment_batch=args.alignment_batch,
        feedback=feedback_config(args),
        privacy=privacy_config(args),
    )


def run(args: argparse.Namespace) -> int:
    if args.model == "transformer":  # its own loop: token windows, bits per character (host/lm)
        from host.commands import train_lm

        if args.dp_epsilon is not None:
            print("opu train: --dp-* works with --model mlp (--mode dfa or optical-dfa), not with "
                  "--model transformer", file=sys.stderr)
            return 2
        return train_lm.run(args)
    from pydantic import ValidationError

    from host.train import DatasetError, TrainingError, TrainingInterrupted, train
    from host.train.checkpoint import CheckpointError

    try:
        cfg = train_config(args)
    except ValidationError as err:
        print(f"opu train: invalid arguments:\n{err}", file=sys.stderr)
        return 2
    try:
        res = train(cfg, args.out, resume=args.resume, progress=not args.no_progress, log=print)
    except TrainingInterrupted as err:
        print(f"opu train: {err}", file=sys.stderr)
        return EXIT_DEVICE_FAILURE
    except (TrainingError, DatasetError, CheckpointError, ValueError) as err:
        print(f"opu train: {err}", file=sys.stderr)
        return 2
    f = res.final if res.metrics else None
    if f is not None:
        acc = 100 * f["test_accuracy"]
        p = f.get("privacy")
        eps = f" epsilon {p['epsilon']:.4g} (delta {p['delta']:g});" if p else ""
        print(f"done: {cfg.model} {cfg.mode} test accuracy {acc:.2f} % after {f['epoch']} epochs;"
              f"{eps} outputs in {res.out_dir}")
    return 0
