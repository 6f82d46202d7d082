"""``opu train --model transformer``: the Transformer language model's options and run.

    opu train --model transformer --dataset pystdlib --mode optical-dfa --steps 2000 --out runs/lm_odfa
    opu train --model transformer --dataset text --text notes/ --mode dfa --out runs/lm_notes

Registered by :mod:`host.commands.train` (one ``opu train`` for every model); writes OUT/config.json,
OUT/metrics.jsonl (one line per ``--eval-every`` steps, with FLOPs, frames, device time and energy),
OUT/curves.png and OUT/checkpoint.npz. ``--epochs`` and ``--batch-size`` of the other models do not
apply: a run is ``--steps`` steps of ``--lm-batch`` windows.
"""

from __future__ import annotations

import argparse
import sys

LM_DATASETS = ("pystdlib", "text")
EXIT_DEVICE_FAILURE = 3


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("transformer (--model transformer)")
    g.add_argument("--text", default=None, help="with --dataset text: a UTF-8 file or directory")
    g.add_argument("--d-model", type=int, default=128)
    g.add_argument("--n-blocks", type=int, default=4)
    g.add_argument("--n-heads", type=int, default=4)
    g.add_argument("--context", type=int, default=128, help="tokens (bytes) per window")
    g.add_argument("--lm-batch", type=int, default=16, help="windows per step")
    g.add_argument("--steps", type=int, default=1000)
    g.add_argument("--eval-every", type=int, default=100, help="steps between evaluations/checkpoints")
    g.add_argument("--eval-windows", type=int, default=64, help="held-out windows per evaluation")
    g.add_argument("--body-lr-scale", type=float, default=0.1,
                   help="dfa, optical-dfa: learning rate of the blocks relative to the head's")


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from host.commands.train import feedback_config
    from host.lm import CorpusError, LMConfig, LMTrainingError, LMTrainingInterrupted, train_lm
    from host.train.checkpoint import CheckpointError

    if args.mode == "pfa":
        print("opu train: --mode pfa is layer-wise (MLP and conv net only); the transformer takes bp, dfa, "
              "optical-dfa or shallow", file=sys.stderr)
        return 2
    dataset = args.dataset or "pystdlib"
    if dataset not in LM_DATASETS:
        print(f"opu train: --model transformer needs a text dataset ({', '.join(LM_DATASETS)}), "
              f"got {dataset!r}", file=sys.stderr)
        return 2
    try:
        cfg = LMConfig(
            mode=args.mode, dataset=dataset, text=args.text, d_model=args.d_model, n_blocks=args.n_blocks,
            n_heads=args.n_heads, context=args.context, batch_size=args.lm_batch, steps=args.steps,
            eval_every=args.eval_every, eval_windows=args.eval_windows, lr=args.lr, seed=args.seed,
            device=args.device, body_lr_scale=args.body_lr_scale,
            feedback=feedback_config(args),
        )
    except ValidationError as err:
        print(f"opu train: invalid arguments:\n{err}", file=sys.stderr)
        return 2
    try:
        res = train_lm(cfg, args.out, resume=args.resume, progress=not args.no_progress, log=print)
    except LMTrainingInterrupted as err:
        print(f"opu train: {err}", file=sys.stderr)
        return EXIT_DEVICE_FAILURE
    except (LMTrainingError, CorpusError, CheckpointError, ValueError) as err:
        print(f"opu train: {err}", file=sys.stderr)
        return 2
    if res.metrics:
        print(f"done: transformer {cfg.mode} held-out {res.final['heldout_bpc']:.3f} bits/char after "
              f"{res.final['step']} steps (unigram {res.unigram_bpc:.3f}); outputs in {res.out_dir}")
    return 0
