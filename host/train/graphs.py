"""Graph datasets for node classification: Planetoid/LINQS citation files and an embedded CSBM.

* :func:`load_planetoid` reads ``NAME.content`` (``<paper id> <features...> <class label>`` per line,
  whitespace separated) and ``NAME.cites`` (``<cited id> <citing id>`` per line) from ``--data-dir``
  (or its ``NAME/`` subdirectory), as distributed by LINQS (https://linqs.org/datasets/) for Cora and
  CiteSeer. Rows are normalized to sum 1 (``NormalizeFeatures``). Malformed files are refused with a
  :class:`~host.train.data.DatasetError` naming the file and line.
* :func:`csbm` draws a contextual stochastic block model (no download): n nodes in C equal classes,
  an undirected edge between two nodes with probability p_in (same class) or p_out (different
  classes), features ``x_i = mu_{y_i} + N(0, sigma^2 I)`` with class means ``mu_c`` of norm
  ``mean_norm`` in random directions. Everything is drawn from ``numpy.random.default_rng(seed)``.

Splits (both): ``train_per_class`` labelled nodes per class (Planetoid's 20), then ``n_val`` (500) and
``n_test`` (1000) of the remaining nodes, drawn with the split seed. The LINQS files do not carry
Planetoid's fixed split indices, so the Cora split here is seeded, not the "public" one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import DatasetError

GRAPH_DATASETS = ("csbm", "cora", "citeseer")


@dataclass(frozen=True)
class GraphData:
    """One graph: features x (n, F) float32, labels y (n,) int32, undirected edges (E, 2) int64 (each once),
    node index arrays of the split, class count, provenance."""

    name: str
    x: np.ndarray
    y: np.ndarray
    edges: np.ndarray
    train_idx: np.ndarray
    val_idx: np.ndarray
    test_idx: np.ndarray
    n_classes: int
    source: str

    @property
    def n_nodes(self) -> int:
        return int(self.x.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.x.shape[1])

    def mask(self, idx: np.ndarray) -> np.ndarray:
        """float32 (n,) indicator of the nodes in ``idx``."""
        m = np.zeros(self.n_nodes, np.float32)
        m[idx] = 1.0
        return m


def split_nodes(
    y: np.ndarray, n_classes: int, seed: int, train_per_class: int = 20, n_val: int = 500, n_test: int = 1000
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) node indices: ``train_per_class`` per class (at most half of a class), then
    val and test from the rest (at most a third / the remainder of it when the graph is small)."""
    rng = np.random.default_rng([seed, 0x5B1])
    train = []
    for c in range(n_classes):
        nodes = np.flatnonzero(y == c)
        k = min(train_per_class, len(nodes) // 2)
        train.extend(rng.choice(nodes, size=k, replace=False).tolist())
    train_idx = np.sort(np.asarray(train, np.int64))
    rest = rng.permutation(np.setdiff1d(np.arange(y.shape[0]), train_idx))
    nv = min(n_val, len(rest) // 3)
    nt = min(n_test, len(rest) - nv)
    return train_idx, np.sort(rest[:nv]), np.sort(rest[nv : nv + nt])


def _planetoid_files(name: str, data_dir: Path | None) -> tuple[Path, Path]:
    dirs = [] if data_dir is None else [data_dir, data_dir / name]
    for d in dirs:
        c, e = d / f"{name}.content", d / f"{name}.cites"
        if c.is_file() and e.is_file():
            return c, e
    where = ", ".join(str(d) for d in dirs) or "(no directory: pass --data-dir)"
    raise DatasetError(
        f"graph dataset {name!r} not found: need {name}.content and {name}.cites in {where}. Download the "
        f"LINQS archive (https://linqs.org/datasets/#{name}, e.g. {name}.tgz), unpack it and pass "
        f"--data-dir to the directory holding the two files; or use --dataset csbm (embedded, no download)"
    )


def load_planetoid(name: str, data_dir: str | Path | None, seed: int = 0, **split) -> GraphData:
    """A LINQS citation graph (``cora``, ``citeseer``) from ``data_dir``; see the module docstring."""
    content, cites = _planetoid_files(name, Path(data_dir) if data_dir is not None else None)
    ids: dict[str, int] = {}
    feats: list[list[float]] = []
    labels: list[str] = []
    n_feat = None
    for ln, line in enumerate(content.read_text(errors="strict").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 3:
            raise DatasetError(f"{content}:{ln}: expected '<id> <features...> <label>', got {line[:60]!r}")
        if n_feat is None:
            n_feat = len(parts) - 2
        elif len(parts) - 2 != n_feat:
            raise DatasetError(f"{content}:{ln}: {len(parts) - 2} features, the first line has {n_feat}")
        if parts[0] in ids:
            raise DatasetError(f"{content}:{ln}: paper id {parts[0]!r} appears twice")
        try:
            feats.append([float(v) for v in parts[1:-1]])
        except ValueError as err:
            raise DatasetError(f"{content}:{ln}: non-numeric feature ({err})") from err
        ids[parts[0]] = len(ids)
        labels.append(parts[-1])
    if len(ids) < 2:
        raise DatasetError(f"{content}: fewer than 2 nodes")
    classes = sorted(set(labels))
    y = np.asarray([classes.index(c) for c in labels], np.int32)
    x = np.asarray(feats, np.float64)
    if not np.all(np.isfinite(x)) or np.any(x < 0):
        raise DatasetError(f"{content}: features must be finite and non-negative (word counts/indicators)")
    rs = x.sum(1, keepdims=True)
    x = (x / np.where(rs > 0, rs, 1.0)).astype(np.float32)
    edges, missing = [], 0
    for ln, line in enumerate(cites.read_text(errors="strict").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise DatasetError(f"{cites}:{ln}: expected '<cited id> <citing id>', got {line[:60]!r}")
        a, b = ids.get(parts[0]), ids.get(parts[1])
        if a is None or b is None:
            missing += 1  # CiteSeer's files cite a few papers absent from its .content
            continue
        edges.append((a, b))
    if not edges:
        raise DatasetError(
            f"{cites}: no edge between papers of {content.name} ({missing} lines name unknown papers)"
        )
    e = np.asarray(edges, np.int64)
    e = np.unique(np.sort(e, axis=1), axis=0)
    e = e[e[:, 0] != e[:, 1]]
    tr, va, te = split_nodes(y, len(classes), seed, **split)
    src = (
        f"{content.parent} ({len(ids)} nodes, {len(e)} edges, {missing} citations of unknown papers skipped)"
    )
    return GraphData(name, x, y, e, tr, va, te, len(classes), src)


@dataclass(frozen=True)
class CSBMParams:
    """Contextual stochastic block model (documented defaults; degree ~ p_in n/C + p_out n (C-1)/C)."""

    n_nodes: int = 2000
    n_classes: int = 4
    n_features: int = 32
    p_in: float = 0.012  # ~6 same-class neighbours per node
    p_out: float = 0.0013  # ~2 other-class neighbours per node (homophily ~0.75)
    mean_norm: float = 1.5  # ||mu_c||: features alone separate the classes only partly
    sigma: float = 1.0


def csbm(seed: int = 0, params: CSBMParams | None = None, **split) -> GraphData:
    """Draw a CSBM graph (see the module docstring and :class:`CSBMParams`)."""
    p = params or CSBMParams()
    rng = np.random.default_rng([seed, 0xC5B])
    y = np.repeat(np.arange(p.n_classes), -(-p.n_nodes // p.n_classes))[: p.n_nodes]
    y = rng.permutation(y).astype(np.int32)
    iu, ju = np.triu_indices(p.n_nodes, k=1)
    prob = np.where(y[iu] == y[ju], p.p_in, p.p_out)
    keep = rng.random(iu.shape[0]) < prob
    edges = np.stack([iu[keep], ju[keep]], axis=1).astype(np.int64)
    mu = rng.normal(size=(p.n_classes, p.n_features))
    mu *= p.mean_norm / np.linalg.norm(mu, axis=1, keepdims=True)
    x = (mu[y] + p.sigma * rng.normal(size=(p.n_nodes, p.n_features))).astype(np.float32)
    tr, va, te = split_nodes(y, p.n_classes, seed, **split)
    return GraphData("csbm", x, y, edges, tr, va, te, p.n_classes, f"embedded CSBM {p} seed {seed}")


def load_graph(name: str, data_dir: str | Path | None = None, seed: int = 0) -> GraphData:
    """``csbm`` (embedded) or a Planetoid/LINQS graph (``cora``, ``citeseer``)."""
    if name == "csbm":
        return csbm(seed)
    if name in ("cora", "citeseer"):
        return load_planetoid(name, data_dir, seed)
    raise DatasetError(f"unknown graph dataset {name!r}; choose one of {', '.join(GRAPH_DATASETS)}")
