"""L-inf evasion attacks on images in [0, 1]: FGSM, PGD (white box through a surrogate gradient),
and the black-box Square (score-based) and HopSkipJump (decision-based) attacks of the Adversarial
Robustness Toolbox (ART) driven through our predict function.

A :class:`Target` is what an attacker can call: ``predict(x) -> logits`` (b, C) (the real model,
device included) and ``grad(x, y) -> dL/dx`` (b, d) (the cross-entropy gradient through the
attacker's backward: the true one for a digital model, a surrogate's for the optical layer).
Every attack returns x_adv with ``|x_adv - x|_inf <= eps`` and ``0 <= x_adv <= 1``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

ATTACKS = ("fgsm", "pgd", "transfer", "square", "hsj", "pr")
#: PGD's default step size as a multiple of eps / steps (Madry et al. 2018); PGD training uses it too
PGD_STEP_FACTOR = 2.5


class AttackError(ValueError):
    """An attack's arguments are out of range (the message says what is allowed)."""


@dataclass
class Target:
    """``predict(x (b, d) float32 in [0, 1]) -> logits (b, C)``; ``grad(x, y) -> dL/dx (b, d)``."""

    predict: Callable[[np.ndarray], np.ndarray]
    grad: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    n_classes: int = 10
    queries: int = 0

    def logits(self, x: np.ndarray) -> np.ndarray:
        self.queries += int(np.shape(x)[0])
        return np.asarray(self.predict(np.asarray(x, np.float32)))


def _check(x: np.ndarray, eps: float) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise AttackError(f"attacks take flattened images (b, d), got shape {x.shape}")
    if not (float(x.min()) >= 0.0 and float(x.max()) <= 1.0):
        raise AttackError("attacks need pixels in [0, 1]: train with --input-scale pixels")
    if not (np.isfinite(eps) and 0 <= eps <= 1):
        raise AttackError(f"eps must be an L-inf radius in [0, 1], got {eps!r}")
    return x


def project(x_adv: np.ndarray, x: np.ndarray, eps: float) -> np.ndarray:
    """Onto the eps-ball around x and the [0, 1] box."""
    return np.clip(np.clip(x_adv, x - eps, x + eps), 0.0, 1.0).astype(np.float32)


def accuracy(target: Target, x: np.ndarray, y: np.ndarray, chunk: int = 256) -> float:
    """Fraction of x classified as y by the target's real predict."""
    pred = np.concatenate([np.argmax(target.logits(x[i : i + chunk]), -1) for i in range(0, len(x), chunk)])
    return float(np.mean(pred == np.asarray(y)))


def fgsm(target: Target, x: np.ndarray, y: np.ndarray, eps: float) -> np.ndarray:
    """x + eps sign(dL/dx), clipped to [0, 1] (Goodfellow et al. 2015)."""
    x = _check(x, eps)
    return project(x + eps * np.sign(target.grad(x, y)), x, eps)


def pgd(
    target: Target,
    x: np.ndarray,
    y: np.ndarray,
    eps: float,
    steps: int = 50,
    step_size: float | None = None,
    seed: int = 0,
    random_start: bool = True,
) -> np.ndarray:
    """Projected gradient ascent on the loss (Madry et al. 2018): uniform random start in the ball,
    ``steps`` signed steps of ``step_size`` (default 2.5 eps / steps), projection after each.

    The last iterate is returned (no best-iterate tracking, so that "more steps never help the
    defender" is a real check).
    """
    x = _check(x, eps)
    if steps < 1:
        raise AttackError(f"PGD needs steps >= 1, got {steps}")
    alpha = PGD_STEP_FACTOR * eps / steps if step_size is None else float(step_size)
    rng = np.random.default_rng(seed)
    xa = project(x + rng.uniform(-eps, eps, x.shape), x, eps) if random_start else x.copy()
    for _ in range(steps):
        xa = project(xa + alpha * np.sign(target.grad(xa, y)), x, eps)
    return xa


def chunked(
    attack: Callable[..., np.ndarray],
    target: Target,
    x: np.ndarray,
    y: np.ndarray,
    eps: float,
    chunk: int = 256,
    **kw,
) -> np.ndarray:
    """Run ``attack`` on chunks of at most ``chunk`` samples (bounded memory and device batches)."""
    return np.concatenate(
        [attack(target, x[i : i + chunk], y[i : i + chunk], eps, **kw) for i in range(0, len(x), chunk)]
    )


# ------------------------------------------------------------------------------------- ART black box
def _image_shape(d: int, image_shape: tuple[int, int] | None) -> tuple[int, int]:
    if image_shape is None:
        side = round(float(np.sqrt(d)))
        if side * side != d:
            raise AttackError(f"{d} features are not a square image: pass image_shape=(H, W)")
        return side, side
    if image_shape[0] * image_shape[1] != d:
        raise AttackError(f"image_shape {image_shape} does not hold {d} features")
    return tuple(image_shape)  # type: ignore[return-value]


def _art_classifier(target: Target, hw: tuple[int, int]):
    """ART's black-box estimator over images (b, 1, H, W) calling ``target`` on (b, H*W)."""
    from art.estimators.classification import BlackBoxClassifierNeuralNetwork

    d = hw[0] * hw[1]

    def probs(x: np.ndarray) -> np.ndarray:
        z = target.logits(np.asarray(x, np.float32).reshape(len(x), d))
        z = z - z.max(axis=-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=-1, keepdims=True)

    return BlackBoxClassifierNeuralNetwork(
        probs, (1, *hw), target.n_classes, channels_first=True, clip_values=(0.0, 1.0)
    )


def square(
    target: Target,
    x: np.ndarray,
    y: np.ndarray,
    eps: float,
    max_queries: int = 1000,
    p_init: float = 0.3,
    seed: int = 0,
    image_shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """ART's Square attack (Andriushchenko et al. 2020), L-inf, margin loss, ``max_queries`` iterations
    (one query per still-correct sample per iteration), one restart."""
    from art.attacks.evasion import SquareAttack

    x = _check(x, eps)
    np.random.seed(seed)  # ART draws from numpy's global generator; fixed for reproducibility
    hw = _image_shape(x.shape[1], image_shape)
    atk = SquareAttack(
        _art_classifier(target, hw),
        norm=np.inf,
        eps=eps,
        max_iter=max_queries,
        p_init=p_init,
        nb_restarts=1,
        batch_size=len(x),
        verbose=False,
    )
    xa = atk.generate(x.reshape(len(x), 1, *hw), y=np.eye(target.n_classes)[y])
    return project(np.asarray(xa, np.float32).reshape(x.shape), x, eps)


def hop_skip_jump(
    target: Target,
    x: np.ndarray,
    y: np.ndarray,
    max_iter: int = 10,
    max_eval: int = 200,
    init_eval: int = 20,
    seed: int = 0,
    image_shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """ART's HopSkipJump (Chen et al. 2020), L-inf, untargeted, decision-based.

    HSJ minimises the distance of a misclassified point instead of working in a fixed ball, so one run
    serves every eps: :func:`within` keeps an adversarial only where it lies inside the ball.
    """
    from art.attacks.evasion import HopSkipJump

    x = _check(x, 0.0)
    np.random.seed(seed)  # ART draws from numpy's global generator; fixed for reproducibility
    hw = _image_shape(x.shape[1], image_shape)
    atk = HopSkipJump(
        _art_classifier(target, hw),
        targeted=False,
        norm=np.inf,
        max_iter=max_iter,
        max_eval=max_eval,
        init_eval=init_eval,
        init_size=20,
        batch_size=64,
        verbose=False,
    )
    xa = atk.generate(x.reshape(len(x), 1, *hw), y=np.eye(target.n_classes)[y])
    return np.clip(np.asarray(xa, np.float32).reshape(x.shape), 0.0, 1.0)


def within(x_adv: np.ndarray, x: np.ndarray, eps: float) -> np.ndarray:
    """x_adv where |x_adv - x|_inf <= eps, x elsewhere (an unbounded attack's result at radius eps)."""
    inside = np.max(np.abs(x_adv - x), axis=1) <= eps + 1e-6
    return np.where(inside[:, None], x_adv, x).astype(np.float32)
