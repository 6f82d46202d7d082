"""Graph data: the LINQS/Planetoid loader on a fixture, refusal of broken files, Â, the CSBM generator."""

import shutil
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from host.train.data import DatasetError
from host.train.graphs import CSBMParams, csbm, load_planetoid, split_nodes
from host.train.models import normalized_adjacency
from host.train.models.gcn import propagate

FIXTURE = Path(__file__).parent / "fixtures" / "tinycora"


def _tiny(tmp_path, content=None, cites=None):
    d = tmp_path / "tinycora"
    shutil.copytree(FIXTURE, d)
    if content is not None:
        (d / "tinycora.content").write_text(content)
    if cites is not None:
        (d / "tinycora.cites").write_text(cites)
    return tmp_path


def test_planetoid_fixture_is_read():
    g = load_planetoid("tinycora", FIXTURE, seed=0, train_per_class=1, n_val=3, n_test=4)
    assert g.x.shape == (12, 5) and g.n_classes == 3
    # classes are the sorted label strings: Neural_Networks, Rule_Learning, Theory
    np.testing.assert_array_equal(g.y[:6], [0, 2, 1, 0, 2, 1])
    np.testing.assert_allclose(g.x[0], [0.5, 0.5, 0, 0, 0])  # row 1 1 0 0 0, normalized to sum 1
    np.testing.assert_allclose(g.x.sum(1), 1.0, rtol=1e-6)
    # 14 citation lines: one self-citation dropped, (9, 0) etc. undirected -> 13 distinct edges
    expected = {
        (0, 3),
        (3, 6),
        (6, 9),
        (1, 4),
        (4, 7),
        (7, 10),
        (2, 5),
        (5, 8),
        (8, 11),
        (0, 1),
        (0, 9),
        (1, 10),
        (2, 11),
    }
    assert {tuple(e) for e in g.edges.tolist()} == expected
    assert len(g.train_idx) == 3 and len(g.val_idx) == 3 and len(g.test_idx) == 4
    assert not set(g.train_idx) & set(g.val_idx) and not set(g.val_idx) & set(g.test_idx)


@pytest.mark.parametrize(
    "content, cites, message",
    [
        ("1\t1\t0\tA\n2\t1\tB\n", None, "1 features, the first line has 2"),
        ("1\t1\t0\tA\n1\t0\t1\tB\n", None, "appears twice"),
        ("1\t1\tx\tA\n2\t0\t1\tB\n", None, "non-numeric"),
        ("1\tA\n", None, "expected '<id> <features"),
        ("1\t1\t0\tA\n2\t0\t1\tB\n", "1\t2\t3\n", "expected '<cited id> <citing id>'"),
        ("1\t1\t0\tA\n2\t0\t1\tB\n", "7\t8\n", "no edge"),
    ],
)
def test_broken_files_are_refused(tmp_path, content, cites, message):
    d = _tiny(tmp_path, content, cites)
    with pytest.raises(DatasetError, match=message):
        load_planetoid("tinycora", d)


def test_missing_files_name_the_fix(tmp_path):
    with pytest.raises(DatasetError, match=r"cora.content and cora.cites.*linqs.*--dataset csbm"):
        load_planetoid("cora", tmp_path)


def test_normalized_adjacency_matches_the_dense_formula():
    edges = np.array([[0, 1], [1, 2], [2, 0], [3, 2], [1, 0]])
    n = 5  # node 4 isolated: only its self-loop
    a = np.zeros((n, n))
    for i, j in edges:
        a[i, j] = a[j, i] = 1
    a += np.eye(n)
    d = a.sum(1)
    expected = a / np.sqrt(np.outer(d, d))
    g = normalized_adjacency(edges, n)
    np.testing.assert_allclose(np.asarray(propagate(g, jnp.eye(n))), expected, rtol=1e-6)


def test_csbm_is_seeded_and_has_its_planted_statistics():
    p = CSBMParams()
    a, b = csbm(0), csbm(0)
    np.testing.assert_array_equal(a.edges, b.edges)
    np.testing.assert_array_equal(a.x, b.x)
    assert not np.array_equal(a.edges, csbm(1).edges)
    n, c = p.n_nodes, p.n_classes
    same = np.sum(a.y[a.edges[:, 0]] == a.y[a.edges[:, 1]])
    pairs_in = c * (n // c) * (n // c - 1) / 2
    pairs_out = n * (n - 1) / 2 - pairs_in
    # edge counts are binomial: tolerance 5 standard deviations
    assert abs(same - p.p_in * pairs_in) < 5 * np.sqrt(p.p_in * pairs_in)
    assert abs(len(a.edges) - same - p.p_out * pairs_out) < 5 * np.sqrt(p.p_out * pairs_out)
    # features: class means of norm mean_norm, unit noise
    for k in range(c):
        xs = a.x[a.y == k]
        # ||mean|| ~ sqrt(mean_norm^2 + F sigma^2 / N_k) +- sigma / sqrt(N_k)
        expected_norm = np.sqrt(p.mean_norm**2 + p.n_features * p.sigma**2 / len(xs))
        assert np.linalg.norm(xs.mean(0)) == pytest.approx(expected_norm, abs=5 * p.sigma / np.sqrt(len(xs)))
        assert (xs - xs.mean(0)).std() == pytest.approx(p.sigma, rel=0.05)


def test_split_sizes():
    y = np.repeat(np.arange(4), 100)
    tr, va, te = split_nodes(y, 4, seed=0)
    assert len(tr) == 80 and np.all(np.bincount(y[tr]) == 20)
    assert len(va) == 106 and len(te) == 214  # a third of the remaining 320, then the rest
