"""Checkpoints: one ``.npz`` of plain arrays plus a JSON metadata string, written atomically.

Parameters and optimizer state are pytrees; their leaves are stored in flattening order
(``leaf_00000``, ...) and restored into the structure of a freshly built template, checking count,
shapes and dtypes, so nothing is unpickled (``np.load(..., allow_pickle=False)``).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import jax
import numpy as np


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt or does not match the run's configuration."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory and ``os.replace``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def save(path: Path, tree: Any, meta: dict) -> None:
    """Save the leaves of ``tree`` and the JSON-serialisable ``meta`` to ``path`` (.npz)."""
    import io

    leaves = jax.tree_util.tree_leaves(tree)
    arrays = {f"leaf_{i:05d}": np.asarray(v) for i, v in enumerate(leaves)}
    arrays["meta_json"] = np.array(json.dumps(meta))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(Path(path), buf.getvalue())


def load(path: Path, template: Any) -> tuple[Any, dict]:
    """(tree shaped like ``template``, meta) from a checkpoint written by :func:`save`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta_json"]))
            keys = sorted(k for k in z.files if k.startswith("leaf_"))
            leaves = [np.array(z[k]) for k in keys]
    except (OSError, ValueError, KeyError) as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err}") from err
    ref, treedef = jax.tree_util.tree_flatten(template)
    if len(ref) != len(leaves):
        raise CheckpointError(f"{path} holds {len(leaves)} arrays, this model needs {len(ref)}")
    for i, (r, v) in enumerate(zip(ref, leaves, strict=True)):
        if np.shape(r) != v.shape or np.asarray(r).dtype != v.dtype:
            raise CheckpointError(
                f"{path}: array {i} is {v.dtype}{v.shape}, the model needs {np.asarray(r).dtype}{np.shape(r)}"
            )
    return jax.tree_util.tree_unflatten(treedef, [jax.numpy.asarray(v) for v in leaves]), meta
