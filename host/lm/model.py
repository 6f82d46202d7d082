"""A decoder-only Transformer in plain JAX with a feedback point at each block's output.

Pre-norm blocks (Radford et al. 2019): ``h ← h + Attn(LN₁(h))``, ``h ← h + MLP(LN₂(h))`` with causal
multi-head self-attention, a 4·d GELU MLP, learned absolute positions, a final LayerNorm and an
untied unembedding to V logits. Each block's output passes ``point(h, "block{i}")``: the identity in
``bp`` and at evaluation, and in the DFA modes the place where the projected output error enters
(per token, d_model values; see :mod:`host.train.points`). Parameters are a plain pytree (dict of
float32 arrays); shapes are in :func:`init`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp

Params = dict
Point = Callable[[jnp.ndarray, str], jnp.ndarray]


def _identity_point(a: jnp.ndarray, name: str) -> jnp.ndarray:
    return a


@dataclass(frozen=True)
class TransformerConfig:
    """Model shape: ``d_model`` (divisible by ``n_heads``), ``n_blocks``, ``context`` T, ``vocab`` V."""

    d_model: int = 128
    n_blocks: int = 4
    n_heads: int = 4
    context: int = 128
    vocab: int = 256

    def __post_init__(self) -> None:
        for name in ("d_model", "n_blocks", "n_heads", "context", "vocab"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")

    @property
    def point_names(self) -> tuple[str, ...]:
        return tuple(f"block{i}" for i in range(self.n_blocks))


def _dense(key: jax.Array, fan_in: int, fan_out: int, scale: float = 1.0) -> jnp.ndarray:
    return jax.random.normal(key, (fan_in, fan_out), jnp.float32) * (scale / jnp.sqrt(fan_in))


def init(cfg: TransformerConfig, key: jax.Array) -> Params:
    """Parameters: ``tok`` (V, d), ``pos`` (T, d), ``blocks`` [per block: ``ln1``/``ln2`` gains and
    biases (d,), ``qkv`` (d, 3d), ``proj`` (d, d), ``fc1`` (d, 4d) + (4d,), ``fc2`` (4d, d) + (d,)],
    ``ln_f`` and ``unembed`` (d, V). Residual-branch outputs are scaled by 1/√(2L) (GPT-2)."""
    d, L = cfg.d_model, cfg.n_blocks
    keys = jax.random.split(key, 3 + 4 * L)
    resid = 1.0 / (2.0 * L) ** 0.5
    blocks = []
    for i in range(L):
        k = keys[3 + 4 * i : 7 + 4 * i]
        blocks.append({
            "ln1_g": jnp.ones((d,), jnp.float32), "ln1_b": jnp.zeros((d,), jnp.float32),
            "qkv": _dense(k[0], d, 3 * d), "proj": _dense(k[1], d, d, resid),
            "ln2_g": jnp.ones((d,), jnp.float32), "ln2_b": jnp.zeros((d,), jnp.float32),
            "fc1": _dense(k[2], d, 4 * d), "fc1_b": jnp.zeros((4 * d,), jnp.float32),
            "fc2": _dense(k[3], 4 * d, d, resid), "fc2_b": jnp.zeros((d,), jnp.float32),
        })
    return {
        "tok": jax.random.normal(keys[0], (cfg.vocab, d), jnp.float32) * 0.02,
        "pos": jax.random.normal(keys[1], (cfg.context, d), jnp.float32) * 0.01,
        "blocks": blocks,
        "ln_f_g": jnp.ones((d,), jnp.float32), "ln_f_b": jnp.zeros((d,), jnp.float32),
        "unembed": _dense(keys[2], d, cfg.vocab),
    }


def _layer_norm(h: jnp.ndarray, g: jnp.ndarray, b: jnp.ndarray, eps: float = 1e-5) -> jnp.ndarray:
    mu = h.mean(-1, keepdims=True)
    var = ((h - mu) ** 2).mean(-1, keepdims=True)
    return (h - mu) * jax.lax.rsqrt(var + eps) * g + b


def _attention(p: Params, h: jnp.ndarray, n_heads: int) -> jnp.ndarray:
    b, t, d = h.shape
    hd = d // n_heads
    q, k, v = jnp.split(h @ p["qkv"], 3, axis=-1)
    q, k, v = (z.reshape(b, t, n_heads, hd).transpose(0, 2, 1, 3) for z in (q, k, v))
    scores = (q @ k.transpose(0, 1, 3, 2)) / jnp.sqrt(jnp.float32(hd))
    causal = jnp.tril(jnp.ones((t, t), bool))
    scores = jnp.where(causal, scores, jnp.finfo(scores.dtype).min)
    mixed = jax.nn.softmax(scores, axis=-1) @ v
    return mixed.transpose(0, 2, 1, 3).reshape(b, t, d) @ p["proj"]


def block(p: Params, h: jnp.ndarray, n_heads: int) -> jnp.ndarray:
    """One pre-norm block on (b, t, d) activations."""
    h = h + _attention(p, _layer_norm(h, p["ln1_g"], p["ln1_b"]), n_heads)
    m = jax.nn.gelu(_layer_norm(h, p["ln2_g"], p["ln2_b"]) @ p["fc1"] + p["fc1_b"])
    return h + m @ p["fc2"] + p["fc2_b"]


def hidden(params: Params, tokens: jnp.ndarray, cfg: TransformerConfig, point: Point = _identity_point
           ) -> jnp.ndarray:
    """Final residual stream (b, t, d) of int tokens (b, t), t ≤ context, each block through ``point``."""
    t = tokens.shape[-1]
    h = params["tok"][tokens] + params["pos"][:t]
    for i, p in enumerate(params["blocks"]):
        h = point(block(p, h, cfg.n_heads), f"block{i}")
    return h


def head(params: Params, h: jnp.ndarray) -> jnp.ndarray:
    """Logits (b, t, V) from the residual stream: final LayerNorm and unembedding."""
    return _layer_norm(h, params["ln_f_g"], params["ln_f_b"]) @ params["unembed"]


def logits(params: Params, tokens: jnp.ndarray, cfg: TransformerConfig, point: Point = _identity_point
           ) -> jnp.ndarray:
    return head(params, hidden(params, tokens, cfg, point))


def token_nll(logit: jnp.ndarray, targets: jnp.ndarray) -> jnp.ndarray:
    """Negative log-likelihood in nats per token (b, t)."""
    logp = jax.nn.log_softmax(logit, axis=-1)
    return -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
