"""Robustness by design: a BP conv net vs the same net with the OPU in its forward path (ROPUST recipe).

    .venv/bin/python bench/robustness.py [--quick] [--data-dir DIR]

Fashion-MNIST (pixels in [0, 1]), one seed, the simulated realistic device (``sim``):

1. ``opu train --model cnn --mode bp`` (the baseline, also the attacker's transfer source);
2. ``opu train --model cnn-opu --mode dfa --init-from <1>`` (insert the optical layer, fine-tune with DFA);
3. ``opu robustness`` with every attack at eps in {0.05, 0.1, 0.2}.

Writes bench/results/robustness.json (``--quick``: robustness_quick.json) with ``natural_acc_bp``,
``natural_acc_opu`` (goal >= natural_acc_bp - 1.5 points), and at eps = 0.1 ``pgd_acc_bp``,
``pgd_acc_opu`` (worst of the random and bpda surrogates), ``bpda_acc_opu``, ``transfer_acc_opu``,
``square_acc_opu``, ``hsj_acc_opu``, ``pr_attack_acc_opu`` (S = 20), ``worst_case_acc_opu`` (minimum over
all attacks; goal >= pgd_acc_bp + 20 points) and ``sanity_checks_passed``. Accuracies in percent.
``natural_acc_*`` are on the whole test set (the trainer's last epoch), ``natural_acc_*_attacked`` on
the attacked subset. ``--attack-only`` attacks the finished runs in ``--work`` again (another attack
budget); ``--summarize-only`` recomputes the JSON from their last report.

Fine-tuning: Adam 1e-3, one feedback point after the dense layer (``--cnn-feedback dense``), m = 1024.
``--backbone pgd-at`` (ROPUST's robust backbone): the conv net is trained with PGD adversarial
training at eps = 0.1 (``--adv-train-eps``, 3 PGD steps a batch) before the optical layer goes in;
writes robustness_pgdat.json with the same keys (``*_bp``: that adversarially trained net).
``--backbone-epochs``, ``--fine-tune-epochs``, ``--n-samples``, ``--square-queries`` and
``--hsj-samples`` shrink a configuration to a machine's budget (recorded in the JSON).

Full configuration (GPU machine or patient CPU): 60000 training images, BP 10 epochs, fine-tuning 3
epochs, 1000 attacked test images (HopSkipJump on 100), PGD 50 steps, Square 1000 queries, S in
{5, 10, 20}. ``--quick`` (shared CPU): 10000 training images, 2 + 1 epochs, 100 test images (HSJ on
10), Square 100 queries, HSJ 3 iterations, S in {5, 20}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
from pathlib import Path

from host.robust.evaluate import ROBUSTNESS_JSON, EvalConfig, evaluate, worst_case
from host.train.trainer import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
EPS = 0.1
#: PGD steps per training batch of the pgd-at backbone (each step costs about one BP step)
PGD_AT_STEPS = 3


def configs(quick: bool, data_dir: str | None, backbone: str = "bp"):
    common = dict(
        dataset="fashion-mnist",
        data_dir=data_dir,
        input_scale="pixels",
        channels=(32, 64),
        dense_width=128,
        batch_size=128,
        seed=0,
        device="sim",
    )
    # one feedback point, at the optical layer's input: the conv blocks learn from its DFA signal by
    # backpropagation through the dense layer (with a point after every block the fine-tuning lost
    # 1.3 points in one epoch; BENCHMARKS.md)
    fine_tune = dict(optical_outputs=1024, lr=1e-3, cnn_feedback="dense")
    if quick:
        bp = TrainConfig(mode="bp", model="cnn", epochs=2, max_train_samples=10000, **common)
        opu = TrainConfig(
            mode="dfa", model="cnn-opu", epochs=1, max_train_samples=10000, **fine_tune, **common
        )
        ev = EvalConfig(
            n_samples=100,
            pgd_steps=50,
            square_queries=100,
            hsj_samples=10,
            hsj_iter=3,
            hsj_max_eval=100,
            pr_anchors=(5, 20),
        )
    else:
        bp = TrainConfig(mode="bp", model="cnn", epochs=10, **common)
        opu = TrainConfig(mode="dfa", model="cnn-opu", epochs=3, **fine_tune, **common)
        ev = EvalConfig()
    if backbone == "pgd-at":  # ROPUST's robust backbone: PGD adversarial training at the attacked eps
        bp = bp.model_copy(update={"adv_train_eps": EPS, "adv_train_steps": PGD_AT_STEPS})
    return bp, opu, ev


def _final_metrics(run: Path) -> tuple[dict, list[dict]]:
    """(config with defaults filled in, per-epoch metrics) of a finished training run."""
    lines = (run / "metrics.jsonl").read_text().splitlines()
    cfg = TrainConfig.model_validate_json((run / "config.json").read_text()).model_dump()
    return cfg, [json.loads(x) for x in lines if x.strip()]


def summarize(rep: dict, work: Path, quick: bool, backbone: str) -> dict:
    """The benchmark's figures of an evaluation report ``rep`` of the runs in ``work``.

    Natural accuracies are the runs' last-epoch accuracies on the whole test set (10 000 images: one
    binomial standard error ~0.27 points); ``natural_acc_*_attacked`` are those of the attacked
    subset (the reference of the robust accuracies; 1000 images: ~0.85 points).
    """
    e = f"{EPS:g}"
    opu = rep["opu"]
    pct = lambda v: round(100 * v, 2)  # noqa: E731
    worst, worst_attack = worst_case(rep, EPS)
    bp_cfg, bp_m = _final_metrics(work / "cnn_bp")
    opu_cfg, opu_m = _final_metrics(work / "cnn_opu")
    res = {
        "config": "quick" if quick else "full",
        "backbone": backbone,
        "backbone_adv_train_eps": bp_cfg.get("adv_train_eps"),
        "backbone_epochs": bp_cfg["epochs"],
        "fine_tune_epochs": opu_cfg["epochs"],
        "fine_tune": {k: opu_cfg[k] for k in ("lr", "cnn_feedback", "optical_outputs", "max_train_samples")},
        "command": " ".join(["bench/robustness.py", *sys.argv[1:]]),
        "dataset": "fashion-mnist",
        "eps": EPS,
        "n_samples": rep["n_samples"],
        "hsj_samples": rep["hsj_samples"],
        "natural_acc_bp": pct(bp_m[-1]["test_accuracy"]),
        "natural_acc_opu": pct(opu_m[-1]["test_accuracy"]),
        "natural_acc_bp_attacked": pct(rep["natural"]["bp"]),
        "natural_acc_opu_attacked": pct(rep["natural"]["opu"]),
        "pgd_acc_bp": pct(rep["bp"]["pgd"][e]),
        "pgd_acc_opu": pct(min(opu["pgd_random"][e], opu["pgd_bpda"][e])),
        "pgd_random_acc_opu": pct(opu["pgd_random"][e]),
        "bpda_acc_opu": pct(opu["pgd_bpda"][e]),
        "transfer_acc_opu": pct(opu["transfer"][e]),
        "square_acc_opu": pct(opu["square"][e]),
        "hsj_acc_opu": pct(opu["hsj"][e]),
        "pr_attack_acc_opu": pct(opu["pr_S20"][e]),
        "worst_case_acc_opu": pct(worst),
        "worst_case_attack": worst_attack,
        "sanity_checks_passed": rep["sanity_checks_passed"],
        "goals": {},
        "report": rep,
        "train_wall_s": sum(m["wall_s"] for m in (*bp_m, *opu_m)),
        "attack_wall_s": rep.get("wall_s"),
        "load_average": os.getloadavg(),
    }
    res["goals"] = {
        "natural_acc_opu >= natural_acc_bp - 1.5": res["natural_acc_opu"] >= res["natural_acc_bp"] - 1.5,
        "worst_case_acc_opu >= pgd_acc_bp + 20": res["worst_case_acc_opu"] >= res["pgd_acc_bp"] + 20,
        "sanity_checks_passed": res["sanity_checks_passed"],
    }
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="shared-CPU configuration (see the docstring)")
    ap.add_argument("--data-dir", default=None, help="Fashion-MNIST IDX files (default: Debian's package)")
    ap.add_argument("--work", default=None, help="run directories (default: bench/results/robustness_runs)")
    ap.add_argument(
        "--backbone",
        choices=("bp", "pgd-at"),
        default="bp",
        help="the conv net the optical layer is inserted into: plain BP, or PGD adversarial "
        "training (ROPUST's robust backbone; writes robustness_pgdat*.json)",
    )
    ap.add_argument("--backbone-epochs", type=int, default=None, help="override the backbone's epochs")
    ap.add_argument("--fine-tune-epochs", type=int, default=None, help="override the fine-tuning's epochs")
    ap.add_argument("--n-samples", type=int, default=None, help="override the attacked test images")
    ap.add_argument("--square-queries", type=int, default=None, help="override Square's query budget")
    ap.add_argument("--hsj-samples", type=int, default=None, help="override HopSkipJump's images")
    ap.add_argument(
        "--attack-only",
        action="store_true",
        help="train nothing: attack the finished runs in --work (e.g. with a smaller attack budget)",
    )
    ap.add_argument(
        "--summarize-only",
        action="store_true",
        help="train and attack nothing: recompute the JSON from the finished runs in --work",
    )
    args = ap.parse_args()
    name = "robustness" + ("_pgdat" if args.backbone == "pgd-at" else "") + ("_quick" if args.quick else "")
    work = Path(args.work or ROOT / "bench" / "results" / f"{name}_runs")
    if args.summarize_only:
        rep = json.loads((work / "cnn_opu" / ROBUSTNESS_JSON).read_text())
    else:
        if work.exists() and not args.attack_only:
            shutil.rmtree(work)
        bp_cfg, opu_cfg, ev = configs(args.quick, args.data_dir, args.backbone)
        if args.backbone_epochs:
            bp_cfg = bp_cfg.model_copy(update={"epochs": args.backbone_epochs})
        if args.fine_tune_epochs:
            opu_cfg = opu_cfg.model_copy(update={"epochs": args.fine_tune_epochs})
        overrides = {
            "n_samples": args.n_samples,
            "square_queries": args.square_queries,
            "hsj_samples": args.hsj_samples,
        }
        ev = dataclasses.replace(ev, **{k: v for k, v in overrides.items() if v})
        if not args.attack_only:
            train(bp_cfg, work / "cnn_bp", progress=False, log=print)
            opu_cfg = opu_cfg.model_copy(update={"init_from": str(work / "cnn_bp")})
            train(opu_cfg, work / "cnn_opu", progress=False, log=print)
        rep = evaluate(work / "cnn_opu", ev, out=work / "cnn_opu")
    res = summarize(rep, work, args.quick, args.backbone)
    out = ROOT / "bench" / "results" / f"{name}.json"
    out.write_text(json.dumps(res, indent=2))
    for k in (
        "natural_acc_bp",
        "natural_acc_opu",
        "natural_acc_bp_attacked",
        "natural_acc_opu_attacked",
        "pgd_acc_bp",
        "pgd_acc_opu",
        "bpda_acc_opu",
        "transfer_acc_opu",
        "square_acc_opu",
        "hsj_acc_opu",
        "pr_attack_acc_opu",
        "worst_case_acc_opu",
    ):
        print(f"{k:>22}: {res[k]:6.2f} %")
    print(f"worst-case attack: {res['worst_case_attack']}; goals: {res['goals']}; written {out}")


if __name__ == "__main__":
    main()
