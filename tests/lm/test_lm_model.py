"""The Transformer: causal masking, the DFA feedback point against a hand-derived gradient, FLOPs."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from host.lm import flops
from host.lm import model as tf
from host.lm.steps import LMSteps, lm_batch


def _dfa_grads(steps: LMSteps, params, tokens, feedback):
    """DFA gradients through the trainer's machinery: tapped forward, then the VJP with e/W and F."""
    batch = lm_batch(tokens)
    _, _, e, wsum, vjp = steps.steps.forward_error(params, batch)
    b, t = batch.y.shape
    return steps.steps._dfa_grads(vjp, e, wsum, jnp.asarray(feedback).reshape(b, t, -1))


def _cfg(**kw):
    base = dict(d_model=16, n_blocks=2, n_heads=2, context=8, vocab=32)
    base.update(kw)
    return tf.TransformerConfig(**base)


def test_logits_do_not_depend_on_later_tokens():
    cfg = _cfg()
    p = tf.init(cfg, jax.random.PRNGKey(1))
    rng = np.random.default_rng(0)
    a = rng.integers(0, cfg.vocab, (1, cfg.context))
    for t in range(cfg.context - 1):
        b = a.copy()
        b[0, t + 1 :] = rng.integers(0, cfg.vocab, cfg.context - t - 1)
        la = np.asarray(tf.logits(p, jnp.asarray(a), cfg))
        lb = np.asarray(tf.logits(p, jnp.asarray(b), cfg))
        np.testing.assert_allclose(la[0, : t + 1], lb[0, : t + 1], atol=1e-5)
        assert np.abs(la[0, t + 1 :] - lb[0, t + 1 :]).max() > 1e-4  # later positions do see them


def test_bad_shape_is_refused():
    with pytest.raises(ValueError, match="divisible"):
        tf.TransformerConfig(d_model=10, n_heads=3)
    with pytest.raises(ValueError, match="n_blocks"):
        tf.TransformerConfig(n_blocks=0)


# ----------------------------------------------------------------- numpy reference of one block
def _ln(h, g, b, eps=1e-5):
    mu = h.mean(-1, keepdims=True)
    var = ((h - mu) ** 2).mean(-1, keepdims=True)
    return (h - mu) / np.sqrt(var + eps) * g + b


def _gelu(x):  # jax.nn.gelu's default tanh approximation
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def _np_block(p, h, n_heads):
    """Independent numpy forward of one pre-norm block; returns (block output, MLP hidden m)."""
    p = {k: np.asarray(v, np.float64) for k, v in p.items()}
    _, t, d = h.shape
    hd = d // n_heads
    qkv = _ln(h, p["ln1_g"], p["ln1_b"]) @ p["qkv"]
    q, k, v = np.split(qkv, 3, axis=-1)
    out = np.zeros_like(h)
    for j in range(n_heads):
        sl = slice(j * hd, (j + 1) * hd)
        s = q[..., sl] @ np.swapaxes(k[..., sl], 1, 2) / np.sqrt(hd)
        s = np.where(np.tril(np.ones((t, t), bool)), s, -np.inf)
        w = np.exp(s - s.max(-1, keepdims=True))
        w /= w.sum(-1, keepdims=True)
        out[..., sl] = w @ v[..., sl]
    h1 = h + out @ p["proj"]
    m = _gelu(_ln(h1, p["ln2_g"], p["ln2_b"]) @ p["fc1"] + p["fc1_b"])
    return h1 + m @ p["fc2"] + p["fc2_b"], m


def test_feedback_point_gives_the_hand_derived_dfa_gradient():
    """One block: the block's last layer gets sum_t m_t^T delta_t with delta = s F / (bT), the head
    its true gradient sum_t LN_f(h_t)^T e_t / (bT), computed here in numpy from first principles."""
    cfg = _cfg(n_blocks=1)
    p = tf.init(cfg, jax.random.PRNGKey(3))
    rng = np.random.default_rng(5)
    tokens = rng.integers(0, cfg.vocab, (3, cfg.context + 1))
    b, t = 3, cfg.context
    fb = rng.normal(size=(b * t, cfg.d_model)).astype(np.float32)
    steps = LMSteps(cfg, optax.sgd(1.0), "fan_in")
    scale = 1 / math.sqrt(cfg.vocab)
    grads = _dfa_grads(steps, p, tokens, fb)

    h0 = np.asarray(p["tok"], np.float64)[tokens[:, :-1]] + np.asarray(p["pos"], np.float64)[:t]
    h, m = _np_block(p["blocks"][0], h0, cfg.n_heads)
    delta = (scale / (b * t)) * fb.astype(np.float64).reshape(b, t, -1)
    np.testing.assert_allclose(np.asarray(grads["blocks"][0]["fc2_b"]), delta.sum((0, 1)),
                               rtol=1e-4, atol=1e-7)
    want_fc2 = np.einsum("bti,btj->ij", m, delta)
    np.testing.assert_allclose(np.asarray(grads["blocks"][0]["fc2"]), want_fc2, rtol=2e-3, atol=1e-6)

    z = _ln(h, np.asarray(p["ln_f_g"], np.float64), np.asarray(p["ln_f_b"], np.float64))
    logit = z @ np.asarray(p["unembed"], np.float64)
    prob = np.exp(logit - logit.max(-1, keepdims=True))
    prob /= prob.sum(-1, keepdims=True)
    e = prob - np.eye(cfg.vocab)[tokens[:, 1:]]
    want_unembed = np.einsum("bti,btj->ij", z, e) / (b * t)
    np.testing.assert_allclose(np.asarray(grads["unembed"]), want_unembed, rtol=2e-3, atol=1e-6)


def test_feedback_cuts_the_chain_between_blocks():
    """With zero feedback for block 1 and some for block 0, block 1 gets exactly zero gradient and
    block 0's gradient does not change when block 1's feedback changes."""
    cfg = _cfg(n_blocks=2)
    p = tf.init(cfg, jax.random.PRNGKey(0))
    rng = np.random.default_rng(1)
    tokens = jnp.asarray(rng.integers(0, cfg.vocab, (2, cfg.context + 1)))
    n = 2 * cfg.context
    steps = LMSteps(cfg, optax.sgd(1.0), "none")
    fb = np.zeros((n, 2 * cfg.d_model), np.float32)
    fb[:, : cfg.d_model] = rng.normal(size=(n, cfg.d_model))
    g1 = _dfa_grads(steps, p, tokens, fb)
    assert all(float(jnp.abs(v).max()) == 0.0 for v in jax.tree_util.tree_leaves(g1["blocks"][1]))
    fb2 = fb.copy()
    fb2[:, cfg.d_model :] = rng.normal(size=(n, cfg.d_model))
    g2 = _dfa_grads(steps, p, tokens, fb2)
    for a, c in zip(jax.tree_util.tree_leaves(g1["blocks"][0]), jax.tree_util.tree_leaves(g2["blocks"][0]),
                    strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(c))


def test_flops_match_a_hand_count():
    # d=8, L=2, T=4, V=16: per block 24*64 + 4*4*8 = 1664; forward 2*1664 + 2*8*16 = 3584
    assert flops.forward_flops_per_token(8, 2, 4, 16) == 3584
    bp = flops.training_flops_per_token("bp", 8, 2, 4, 16)
    assert (bp.forward, bp.backward, bp.feedback) == (3584, 7168, 0)
    dfa = flops.training_flops_per_token("dfa", 8, 2, 4, 16)
    assert (dfa.backward, dfa.feedback) == (7168 - 1 * 6 * 64, 2 * 16 * 2 * 8)
    odfa = flops.training_flops_per_token("optical-dfa", 8, 2, 4, 16)
    assert odfa.feedback == 0 and odfa.backward == dfa.backward
    assert flops.training_flops_per_token("shallow", 8, 2, 4, 16).backward == 2 * 8 * 16
    with pytest.raises(ValueError, match="unknown mode"):
        flops.training_flops_per_token("pfa", 8, 2, 4, 16)


@pytest.mark.parametrize(("d", "blocks", "t"), [(64, 2, 16), (128, 1, 32)])
def test_forward_flops_agree_with_xla_cost_analysis(d, blocks, t):
    """XLA counts every op (matmuls + elementwise): ours (matmuls only) is at most 6 % below it."""
    cfg = tf.TransformerConfig(d, blocks, 4, t, 256)
    p = tf.init(cfg, jax.random.PRNGKey(0))
    tok = jnp.zeros((2, t), jnp.int32)
    cost = jax.jit(lambda q, x: tf.logits(q, x, cfg)).lower(p, tok).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    xla = cost["flops"] / (2 * t)
    ours = flops.forward_flops_per_token(d, blocks, t, 256)
    assert ours <= xla <= ours * 1.06, (ours, xla)


def test_parameter_count_matches_the_pytree():
    cfg = _cfg(d_model=24, n_blocks=3, n_heads=4, context=10, vocab=40)
    p = tf.init(cfg, jax.random.PRNGKey(0))
    n = sum(int(np.prod(v.shape)) for v in jax.tree_util.tree_leaves(p))
    assert flops.parameter_count(24, 3, 10, 40)["total"] == n
    assert math.isclose(flops.parameter_count(24, 3, 10, 40)["non_embedding"], n - 40 * 24 - 10 * 24)


@pytest.mark.parametrize(("mode", "parts"), [
    # d=8, L=2, T=4, V=16: forward 3584 (see above); dfa's backward 2 x 3584 - (2 - 1) x 6 x 64,
    # its feedback 2 V L d = 512; shallow's backward 2 d V = 256
    ("bp", (3584, 7168, 0)),
    ("dfa", (3584, 6784, 512)),
    ("optical-dfa", (3584, 6784, 0)),
    ("shallow", (3584, 256, 0)),
])
def test_every_mode_counts_all_three_parts_and_their_sum(mode, parts):
    got = flops.training_flops_per_token(mode, 8, 2, 4, 16)
    fwd, bwd, fb = parts
    assert got.as_dict() == {"forward": fwd, "backward": bwd, "feedback": fb, "total": fwd + bwd + fb}
    assert got.total == fwd + bwd + fb and all(type(v) is float for v in got.as_dict().values())
