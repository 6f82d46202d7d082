"""Digital FLOPs of the decoder-only Transformer, counted from its shapes.

Convention (Kaplan et al. 2020, "Scaling laws for neural language models", Table 1): one
multiply-add is 2 FLOPs and only matrix products are counted; layer norms, softmax, GELU, residual
adds and the embedding lookup are left out (under 2 % of the total at the sizes used here: per token
and block they are O(d + T·heads) against 24 d² + 4 T d). Attention is counted as computed: the
causal mask is applied to the full T × T score matrix, so every token pays for T keys.

Per token, with d = ``d_model``, L = ``n_blocks``, T = ``context``, V = vocabulary and a 4 d MLP:

* forward, one block: QKV 6 d², scores Q Kᵀ 2 T d, mixing A V 2 T d, output projection 2 d²,
  MLP 16 d²  →  24 d² + 4 T d; the unembedding 2 d V. ``forward = L (24 d² + 4 T d) + 2 d V``.
* ``bp`` backward: every product Y = X W needs dX and dW (each as costly as the product), and both
  attention products need the cotangents of both operands: ``backward_bp = 2 · forward``.
* ``dfa`` / ``optical-dfa`` backward: the same products inside each block, but the cotangent of a
  block's input is discarded by the feedback point below it (dead code under ``jit``), which saves the
  dX of each block's first product (QKV, 6 d²) for blocks 2..L (block 1's input feeds the learned
  embedding): ``backward_dfa = 2 · forward − (L − 1) · 6 d²``.
* ``dfa`` feedback: the digital random projection of e ∈ R^V to L·d outputs, ``2 V L d``;
  ``optical-dfa``: 0 digital FLOPs (the device computes it: frames and device time instead).
* ``shallow`` backward: dW of the unembedding only, ``2 d V``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FlopsPerToken:
    """FLOPs per token of one training step and their sum (``total``)."""

    forward: float
    backward: float
    feedback: float

    @property
    def total(self) -> float:
        return self.forward + self.backward + self.feedback

    def as_dict(self) -> dict[str, float]:
        return {"forward": self.forward, "backward": self.backward, "feedback": self.feedback,
                "total": self.total}


def forward_flops_per_token(d_model: int, n_blocks: int, context: int, vocab: int) -> float:
    d, L, T, V = d_model, n_blocks, context, vocab
    return float(L * (24 * d * d + 4 * T * d) + 2 * d * V)


def training_flops_per_token(mode: str, d_model: int, n_blocks: int, context: int,
                             vocab: int) -> FlopsPerToken:
    """Forward, backward and feedback FLOPs per token for ``mode`` (see the module docstring)."""
    d, L, V = d_model, n_blocks, vocab
    fwd = forward_flops_per_token(d_model, n_blocks, context, vocab)
    if mode == "bp":
        return FlopsPerToken(fwd, 2 * fwd, 0.0)
    if mode in ("dfa", "optical-dfa"):
        bwd = 2 * fwd - (L - 1) * 6 * d * d
        fb = 2.0 * V * L * d if mode == "dfa" else 0.0
        return FlopsPerToken(fwd, float(bwd), fb)
    if mode == "shallow":
        return FlopsPerToken(fwd, float(2 * d * V), 0.0)
    raise ValueError(f"unknown mode {mode!r}; choose bp, dfa, optical-dfa or shallow")


def parameter_count(d_model: int, n_blocks: int, context: int, vocab: int) -> dict[str, int]:
    """Parameters: ``non_embedding`` (the blocks, Kaplan's N) and ``total``."""
    d = d_model
    # QKV and output projection (no biases), MLP weights and biases, two LayerNorms (gain, bias)
    block = 3 * d * d + d * d + (4 * d * d + 4 * d) + (4 * d * d + d) + 4 * d
    non_emb = n_blocks * block + 2 * d + d * vocab  # final LN and unembedding
    return {"non_embedding": non_emb, "total": non_emb + vocab * d + context * d}
