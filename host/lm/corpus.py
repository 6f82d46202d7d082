"""Character-level text corpora that need no download: the Python standard library's own sources.

The ``pystdlib`` corpus is every ``*.py`` file of the running interpreter's standard library
(``sysconfig.get_paths()["stdlib"]``), without the test suites and bundled applications
(:data:`EXCLUDED_DIRS`), in sorted order of their POSIX relative paths. A file belongs to the
held-out split when the first 8 hex digits of the SHA-256 of its relative path, read as an integer,
fall below ``heldout_fraction × 2³²``: the split is by file (no file contributes to both), it does not
depend on which other files exist, and it is the same on every machine with the same Python version
(the corpus's ``digest`` names the exact bytes; record it with the results).

Tokens are UTF-8 bytes (vocabulary V = 256): every text is representable, nothing is mapped to an
unknown symbol, and the loss converts exactly to bits per *character* by dividing the summed
bits over a span of bytes by the number of characters in it (bytes that are not UTF-8 continuation
bytes ``0b10xxxxxx``).

``--text PATH`` uses any UTF-8 file or directory instead (:func:`load_text_corpus`): a directory is
split by file like the standard library; a single file by its last ``heldout_fraction`` of bytes.
"""

from __future__ import annotations

import hashlib
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np

VOCAB_SIZE = 256
#: directories of the standard library left out of ``pystdlib`` (test suites, bundled apps, 2to3)
EXCLUDED_DIRS = frozenset({"test", "tests", "idle_test", "idlelib", "lib2to3", "turtledemo",
                           "site-packages", "dist-packages", "__pycache__", "ensurepip"})
HELDOUT_FRACTION = 0.1


class CorpusError(ValueError):
    """A corpus cannot be built (the message names the path and what is needed)."""


@dataclass(frozen=True)
class Corpus:
    """A byte-token corpus split by file.

    ``train`` and ``heldout``: uint8 arrays of UTF-8 bytes (files joined by a newline);
    ``train_files``/``heldout_files``: the relative paths in order; ``digest``: SHA-256 over the
    file names and bytes of both splits, so two runs can tell whether they saw the same data.
    """

    name: str
    source: str
    train: np.ndarray
    heldout: np.ndarray
    train_files: tuple[str, ...]
    heldout_files: tuple[str, ...]
    digest: str

    @property
    def vocab_size(self) -> int:
        return VOCAB_SIZE

    def describe(self) -> dict:
        return {"name": self.name, "source": self.source, "digest": self.digest,
                "train_files": len(self.train_files), "heldout_files": len(self.heldout_files),
                "train_bytes": int(self.train.size), "heldout_bytes": int(self.heldout.size),
                "train_chars": n_chars(self.train), "heldout_chars": n_chars(self.heldout)}


def n_chars(tokens: np.ndarray) -> int:
    """Number of UTF-8 characters in a byte array (bytes that are not continuation bytes)."""
    t = np.asarray(tokens, dtype=np.uint8)
    return int(np.count_nonzero((t & 0xC0) != 0x80))


def is_heldout(relative_path: str, heldout_fraction: float = HELDOUT_FRACTION) -> bool:
    """Deterministic by-file split from the SHA-256 of the POSIX relative path."""
    h = int(hashlib.sha256(relative_path.encode("utf-8")).hexdigest()[:8], 16)
    return h < heldout_fraction * 2**32


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(root: Path | None = None) -> list[str]:
    """Sorted POSIX relative paths of the standard library's ``*.py`` files, tests excluded."""
    root = Path(root) if root is not None else stdlib_root()
    if not root.is_dir():
        raise CorpusError(f"the standard library directory {root} does not exist")
    rel = []
    for p in root.rglob("*.py"):
        parts = p.relative_to(root).parts
        if any(part in EXCLUDED_DIRS or part.startswith("test_") for part in parts[:-1]):
            continue
        if parts[-1].startswith("test_"):
            continue
        rel.append(p.relative_to(root).as_posix())
    return sorted(rel)


def _join(root: Path, files: list[str], hasher) -> np.ndarray:
    chunks = []
    for rel in files:
        data = (root / rel).read_bytes()
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise CorpusError(f"{root / rel} is not UTF-8 text ({err}); remove it or convert it") from err
        hasher.update(rel.encode() + b"\0" + data + b"\0")
        chunks.append(data)
        chunks.append(b"\n")
    return np.frombuffer(b"".join(chunks), dtype=np.uint8).copy()


def _split_files(root: Path, files: list[str], name: str, source: str, heldout_fraction: float) -> Corpus:
    held = [f for f in files if is_heldout(f, heldout_fraction)]
    train = [f for f in files if not is_heldout(f, heldout_fraction)]
    if not held or not train:
        raise CorpusError(f"{source}: {len(files)} files give an empty {'held-out' if not held else 'train'} "
                          f"split at heldout_fraction={heldout_fraction}; give more files or one file")
    hasher = hashlib.sha256()
    t = _join(root, train, hasher)
    h = _join(root, held, hasher)
    return Corpus(name, source, t, h, tuple(train), tuple(held), hasher.hexdigest())


def load_pystdlib(root: Path | None = None, heldout_fraction: float = HELDOUT_FRACTION) -> Corpus:
    """The ``pystdlib`` corpus (see the module docstring)."""
    root = Path(root) if root is not None else stdlib_root()
    files = stdlib_files(root)
    import sys

    source = f"Python {sys.version.split()[0]} standard library at {root} ({len(files)} files)"
    return _split_files(root, files, "pystdlib", source, heldout_fraction)


def load_text_corpus(path: str | Path, heldout_fraction: float = HELDOUT_FRACTION) -> Corpus:
    """Any UTF-8 file, or a directory of UTF-8 files (hidden files and directories skipped)."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f.relative_to(p).as_posix() for f in p.rglob("*")
                       if f.is_file() and not any(s.startswith(".") for s in f.relative_to(p).parts))
        if not files:
            raise CorpusError(f"--text {p}: the directory holds no files")
        return _split_files(p, files, p.name, f"text files under {p} ({len(files)} files)", heldout_fraction)
    if not p.is_file():
        raise CorpusError(f"--text {p}: no such file or directory")
    data = p.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CorpusError(f"--text {p} is not UTF-8 text ({err})") from err
    cut = int(len(data) * (1 - heldout_fraction))
    while 0 < cut < len(data) and (data[cut] & 0xC0) == 0x80:  # do not split a character
        cut += 1
    if cut < 2 or len(data) - cut < 2:
        raise CorpusError(f"--text {p}: {len(data)} bytes are too few to split into train and held-out")
    digest = hashlib.sha256(data).hexdigest()
    arr = np.frombuffer(data, dtype=np.uint8)
    return Corpus(p.name, f"the file {p} (last {heldout_fraction:.0%} held out)", arr[:cut].copy(),
                  arr[cut:].copy(), (p.name,), (p.name,), digest)


def load_corpus(dataset: str, text: str | Path | None = None) -> Corpus:
    """``dataset="pystdlib"``, or ``dataset="text"`` with ``text`` a file or directory."""
    if dataset == "pystdlib":
        return load_pystdlib()
    if dataset == "text":
        if text is None:
            raise CorpusError("dataset 'text' needs --text PATH (a UTF-8 file or directory)")
        return load_text_corpus(text)
    raise CorpusError(f"unknown text dataset {dataset!r}; choose 'pystdlib' or 'text' with --text PATH")


def unigram_bpc(corpus: Corpus) -> float:
    """Held-out bits per character of the add-one-smoothed byte unigram fitted on the train split."""
    counts = np.bincount(corpus.train, minlength=VOCAB_SIZE).astype(np.float64) + 1.0
    logp = np.log2(counts / counts.sum())
    return float(-logp[corpus.heldout].sum() / n_chars(corpus.heldout))


def window_starts(n_tokens: int, seq_len: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` random start offsets of windows of ``seq_len + 1`` tokens (inputs and targets)."""
    if n_tokens < seq_len + 1:
        raise CorpusError(f"the split has {n_tokens} tokens, fewer than one window of {seq_len + 1}")
    return rng.integers(0, n_tokens - seq_len, size=count)


def windows(tokens: np.ndarray, starts: np.ndarray, seq_len: int) -> np.ndarray:
    """(count, seq_len + 1) int32 windows starting at ``starts``."""
    idx = np.asarray(starts)[:, None] + np.arange(seq_len + 1)[None, :]
    return np.asarray(tokens, dtype=np.int32)[idx]


def heldout_windows(corpus: Corpus, seq_len: int, max_windows: int) -> np.ndarray:
    """The first ``max_windows`` non-overlapping held-out windows (seq_len + 1 tokens each)."""
    n = (corpus.heldout.size - 1) // seq_len
    k = min(n, max_windows)
    if k < 1:
        raise CorpusError(f"the held-out split ({corpus.heldout.size} bytes) is shorter than one window")
    starts = np.arange(k) * seq_len
    return windows(corpus.heldout, starts, seq_len)
