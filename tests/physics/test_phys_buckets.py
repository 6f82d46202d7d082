"""Padded call shapes (issue 17): every batch is covered, padding is bounded, and few shapes exist.

Each distinct shape costs a compilation (about a second on 2 cores), so the camera and GEMM calls pad
batches to buckets; these tests pin the bounds the docs state (docs/physics.md, "Same values on every
machine, fast on each"). That padding never changes a frame is checked by the chunking tests
(test_phys_medium.py) and the golden digests (test_phys_golden.py).
"""

from __future__ import annotations

import math

import pytest

from opu.camera import (
    CHUNK_VALUES,
    EXACT_CHUNK,
    EXACT_SIZES,
    MIN_CALL_VALUES,
    _exact_pieces,
    _half_octaves,
    _row_bucket,
)
from opu.model import _batch_bucket


@pytest.mark.parametrize("n", [1, 4095, 4096, 4097, 16385, 65535, 65536, 65537, 200_000, 1_000_003])
def test_exact_pieces_cover_the_values_with_the_listed_sizes(n):
    pieces = _exact_pieces(n)
    starts = [s for s, _ in pieces]
    assert starts[0] == 0 and all(b - a == size for (a, size), b in zip(pieces, starts[1:], strict=False))
    assert all(size in EXACT_SIZES for _, size in pieces)
    end = pieces[-1][0] + pieces[-1][1]
    assert n <= end < n + EXACT_CHUNK  # padding below one large piece
    assert len(pieces) == max(1, math.ceil(n / EXACT_CHUNK))
    rest = n - pieces[-1][0]  # the last piece pads at most 1.5x (above the smallest size)
    assert pieces[-1][1] <= max(EXACT_SIZES[0], 1.5 * rest)


def test_half_octave_sizes():
    assert _half_octaves(64, 512) == (64, 96, 128, 192, 256, 384, 512)
    assert _half_octaves(1, 8) == (1, 2, 3, 4, 6, 8)  # 1.5 is not a row count
    assert _half_octaves(8, 100) == (8, 12, 16, 24, 32, 48, 64, 96, 100)
    assert _half_octaves(4, 40) == (4, 6, 8, 12, 16, 24, 32, 40)  # 48 would pass the end
    assert _half_octaves(5, 40) == (5, 10, 15, 20, 30, 40)  # 7.5 is not a row count either
    assert EXACT_SIZES == (4096, 6144, 8192, 12288, 16384, 24576, 32768, 49152, EXACT_CHUNK)


@pytest.mark.parametrize("m", [256, 1024, 1600, 4096, 10_000])
def test_camera_row_buckets_are_few_and_cover_every_batch(m):
    chunk = max(1, 1 << math.floor(math.log2(max(1, CHUNK_VALUES // m))))
    sizes = {_row_bucket(rows, m, chunk) for rows in range(1, chunk + 1)}
    assert all(_row_bucket(r, m, chunk) >= r for r in range(1, chunk + 1))
    assert all(_row_bucket(s, m, chunk) == s for s in sizes)  # a batch of a bucket's size is not padded
    assert max(sizes) == chunk
    # half octaves from about MIN_CALL_VALUES values up to the chunk: two per doubling, plus the ends
    assert len(sizes) <= 2 + 2 * math.ceil(math.log2(max(1, CHUNK_VALUES / MIN_CALL_VALUES)))
    # the padding: at most 1.5x the frames above the smallest call (>= 2^16 values or the chunk)
    r0 = min(sizes)
    assert r0 * m >= min(MIN_CALL_VALUES, chunk * m) and (r0 == 1 or (r0 // 2) * m < MIN_CALL_VALUES)
    assert all(_row_bucket(r, m, chunk) <= max(r0, 1.5 * r) for r in range(1, chunk + 1))


def test_gemm_batch_buckets_bound_the_extra_work():
    for b in range(1, 5000):
        rows = _batch_bucket(b)
        assert rows >= b
        if b >= 512:
            assert rows - b < 8
        elif b >= 64:
            assert rows - b < 64
        else:
            assert rows <= max(8, 2 * b)
    assert len({_batch_bucket(b) for b in range(1, 64)}) == 4  # 8, 16, 32, 64
