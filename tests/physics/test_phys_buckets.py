"""Padded call shapes (issue 17): every batch is covered, padding is bounded, and few shapes exist.

Each distinct shape costs a compilation (about a second on 2 cores), so the camera and GEMM calls pad
batches to buckets; these tests pin the bounds the docs state (docs/physics.md, "Same values on every
machine, fast on each"). That padding never changes a frame is checked by the chunking tests
(test_phys_medium.py) and the golden digests (test_phys_golden.py).
"""

from __future__ import annotations

import math

import pytest

from opu.camera import CHUNK_VALUES, EXACT_CHUNK, EXACT_SIZES, MIN_CALL_VALUES, _exact_pieces, _row_bucket
from opu.model import _batch_bucket


@pytest.mark.parametrize("n", [1, 4095, 4096, 4097, 16385, 65535, 65536, 65537, 200_000, 1_000_003])
def test_exact_pieces_cover_the_values_with_the_three_sizes(n):
    pieces = _exact_pieces(n)
    starts = [s for s, _ in pieces]
    assert starts[0] == 0 and all(b - a == size for (a, size), b in zip(pieces, starts[1:], strict=False))
    assert all(size in EXACT_SIZES for _, size in pieces)
    end = pieces[-1][0] + pieces[-1][1]
    assert n <= end < n + EXACT_CHUNK  # padding below one large piece
    assert len(pieces) == max(1, math.ceil(n / EXACT_CHUNK))


@pytest.mark.parametrize("m", [256, 1024, 1600, 4096, 10_000])
def test_camera_row_buckets_are_few_and_cover_every_batch(m):
    chunk = max(1, 1 << math.floor(math.log2(max(1, CHUNK_VALUES // m))))
    sizes = {_row_bucket(rows, m, chunk) for rows in range(1, chunk + 1)}
    assert all(_row_bucket(r, m, chunk) >= r for r in range(1, chunk + 1))
    assert max(sizes) == chunk
    # powers of 4 from about MIN_CALL_VALUES values up to the chunk: at most 1 + log4(chunk m / 2^16) + 1
    assert len(sizes) <= 2 + math.ceil(math.log(max(1, CHUNK_VALUES / MIN_CALL_VALUES), 4))


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
