"""The corpus builder: deterministic, split by file, UTF-8 only, bits per character."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest

from host.lm import corpus as c


def _tree(tmp_path, files: dict[str, bytes]):
    for rel, data in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return tmp_path


def test_stdlib_file_list_is_sorted_and_excludes_tests():
    files = c.stdlib_files()
    assert files == sorted(files) and len(files) > 300
    assert "os.py" in files and "json/decoder.py" in files
    assert not any(f.startswith(("test/", "idlelib/", "lib2to3/")) or "/test_" in f for f in files)


def test_split_is_by_file_and_by_the_path_hash():
    files = [f"pkg/m{i:03d}.py" for i in range(200)]
    held = [f for f in files if c.is_heldout(f)]
    # independent rule: first 8 hex digits of sha256(path) below 0.1 * 2**32
    want = [f for f in files if int(hashlib.sha256(f.encode()).hexdigest()[:8], 16) < 0.1 * 2**32]
    assert held == want and 5 <= len(held) <= 40  # Binomial(200, 0.1): mean 20, sd 4.2


def test_directory_corpus_is_deterministic_and_disjoint(tmp_path):
    files = {f"d/f{i:02d}.txt": f"file {i} é\n".encode() * (i + 1) for i in range(40)}
    root = _tree(tmp_path, files)
    a, b = c.load_text_corpus(root), c.load_text_corpus(root)
    assert a.digest == b.digest and a.train_files == b.train_files
    assert set(a.train_files).isdisjoint(a.heldout_files)
    assert set(a.train_files) | set(a.heldout_files) == set(files)
    assert a.heldout_files == tuple(sorted(f for f in files if c.is_heldout(f)))
    want = b"".join(files[f] + b"\n" for f in a.heldout_files)
    assert a.heldout.tobytes() == want


def test_pystdlib_is_reproducible():
    a, b = c.load_pystdlib(), c.load_pystdlib()
    assert a.digest == b.digest and a.train.size > 10**6 and a.heldout.size > 10**5
    assert set(a.train_files).isdisjoint(a.heldout_files)


def test_single_file_splits_on_a_character_boundary(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("é" * 100, encoding="utf-8")  # 2 bytes per character
    corp = c.load_text_corpus(p)
    corp.train.tobytes().decode("utf-8")
    corp.heldout.tobytes().decode("utf-8")
    assert c.n_chars(corp.train) + c.n_chars(corp.heldout) == 100


def test_bad_text_is_refused(tmp_path):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\xff\xfe\x00abc" * 10)
    with pytest.raises(c.CorpusError, match="not UTF-8"):
        c.load_text_corpus(bad)
    with pytest.raises(c.CorpusError, match="no such file"):
        c.load_text_corpus(tmp_path / "missing")
    with pytest.raises(c.CorpusError, match="needs --text"):
        c.load_corpus("text")
    with pytest.raises(c.CorpusError, match="unknown text dataset"):
        c.load_corpus("wiki")


def test_n_chars_counts_utf8_characters():
    s = "aé€😀"
    assert c.n_chars(np.frombuffer(s.encode(), np.uint8)) == 4


def test_unigram_bpc_is_the_cross_entropy_of_byte_frequencies(tmp_path):
    # train: 'a' x 3 and 'b' x 1 per file; held-out file 'ab'. Add-one smoothing over 256 symbols.
    files = {f"x{i:03d}": b"aaab" for i in range(60)}
    root = _tree(tmp_path, files)
    corp = c.load_text_corpus(root)
    n_tr = len(corp.train_files)
    counts = np.ones(256)
    counts[ord("a")] += 3 * n_tr
    counts[ord("b")] += n_tr
    counts[ord("\n")] += n_tr
    p = counts / counts.sum()
    n_h = len(corp.heldout_files)
    bits = -n_h * (3 * math.log2(p[ord("a")]) + math.log2(p[ord("b")]) + math.log2(p[ord("\n")]))
    assert c.unigram_bpc(corp) == pytest.approx(bits / (5 * n_h), rel=1e-12)
