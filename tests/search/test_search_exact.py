"""Blocked exact search against dense brute force: random data, k > 1, ties, both directions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from mmbind.binding.search import (
    l2_normalize,
    merge_topk,
    to_storage,
    topk_cosine,
    topk_cosine_both,
)
from mmbind.errors import ConfigError, DataError, ShapeError


def brute(
    q: NDArray[np.float32], keys: NDArray[np.float32], k: int
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Dense reference: full matrix, order by (similarity desc, index asc)."""
    s = q.astype(np.float64) @ keys.astype(np.float64).T
    idx = np.broadcast_to(np.arange(keys.shape[0]), s.shape)
    order = np.lexsort((idx, -s), axis=1)[:, :k]
    return np.take_along_axis(s, order, axis=1).astype(np.float32), order.astype(np.int64)


def int_data(
    rng: np.random.Generator, n: int, d: int, lo: int = -2, hi: int = 2
) -> NDArray[np.float32]:
    """Small integers: every inner product is exact in float32, so ties are exact."""
    return rng.integers(lo, hi + 1, size=(n, d)).astype(np.float32)


BLOCKS = [None, 7, (5, 11), (64, 3), (1000, 1000)]


@pytest.mark.parametrize("block_size", BLOCKS)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("k", [1, 3])
def test_integer_data_exact_with_ties(block_size: object, threads: int, k: int) -> None:
    rng = np.random.default_rng(k * 10 + threads)
    a, b = int_data(rng, 157, 6), int_data(rng, 203, 6)
    (fv, fi), (bv, bi) = topk_cosine_both(
        a,
        b,
        k,
        normalized=True,
        block_size=block_size,
        threads=threads,  # type: ignore[arg-type]
    )
    ev, ei = brute(a, b, k)
    np.testing.assert_array_equal(fi, ei)
    np.testing.assert_array_equal(fv, ev)
    ev, ei = brute(b, a, k)
    np.testing.assert_array_equal(bi, ei)
    np.testing.assert_array_equal(bv, ev)
    _sv, si = topk_cosine(a, b, k, normalized=True, block_size=block_size, threads=threads)  # type: ignore[arg-type]
    np.testing.assert_array_equal(si, fi)


def test_large_enough_to_use_both_workers() -> None:
    # Above the small-work threshold: two workers, BLAS limited to one thread each.
    rng = np.random.default_rng(0)
    a, b = int_data(rng, 2100, 64, -1, 1), int_data(rng, 1500, 64, -1, 1)
    for k in (1, 4):
        (_fv, fi), (_bv, bi) = topk_cosine_both(a, b, k, normalized=True, block_size=(256, 512))
        np.testing.assert_array_equal(fi, brute(a, b, k)[1])
        np.testing.assert_array_equal(bi, brute(b, a, k)[1])


def test_duplicate_keys_go_to_lower_index() -> None:
    # Entries are multiples of 1/4 with 16 dims: every product and partial sum is exact in
    # float32, so duplicate keys score bit-identically under any BLAS kernel, blocking or
    # summation order (with arbitrary floats, two positions of one row may be rounded
    # differently by a GEMM's edge kernels, and there would be no tie to break).
    rng = np.random.default_rng(1)
    base = rng.integers(-4, 5, size=(5, 16)).astype(np.float32) / 4
    keys = np.concatenate([base, base, base[::-1]], axis=0)  # every row three times
    q = base.copy()
    for bs in [None, 2, (1, 3)]:
        sims, idx = topk_cosine(  # type: ignore[arg-type]
            q, keys, 3, normalized=True, block_size=bs, threads=2
        )
        expected = np.stack([np.arange(5), np.arange(5) + 5, 14 - np.arange(5)], axis=1)
        np.testing.assert_array_equal(idx, expected)
        np.testing.assert_array_equal(sims[:, 0], np.square(base).sum(axis=1))
        assert np.all(sims[:, 0] == sims[:, 1]) and np.all(sims[:, 1] == sims[:, 2])


def test_all_equal_keys() -> None:
    q = np.ones((4, 3), np.float32)
    keys = np.ones((9, 3), np.float32)
    _, idx = topk_cosine(q, keys, 9, block_size=2)
    np.testing.assert_array_equal(idx, np.tile(np.arange(9), (4, 1)))


@pytest.mark.parametrize("k", [1, 2, 5])
def test_random_float_data_matches_brute_force(k: int) -> None:
    rng = np.random.default_rng(7)
    q = rng.standard_normal((700, 32)).astype(np.float32)
    keys = rng.standard_normal((900, 32)).astype(np.float32) * 3.0
    sims, idx = topk_cosine(q, keys, k, block_size=(128, 256), threads=2)
    ev, ei = brute(l2_normalize(q), l2_normalize(keys), k)
    np.testing.assert_allclose(sims, ev, atol=1e-5)
    assert np.all(np.diff(sims, axis=1) <= 0)
    # indices agree wherever the reference order is not within rounding of a tie
    assert np.mean(idx == ei) > 0.999


def test_both_equals_two_single_searches_on_floats() -> None:
    rng = np.random.default_rng(3)
    a = rng.standard_normal((500, 24)).astype(np.float32)
    b = rng.standard_normal((650, 24)).astype(np.float32)
    (fv, fi), (bv, bi) = topk_cosine_both(a, b, 2, block_size=(64, 128))
    sv, si = topk_cosine(a, b, 2, block_size=(64, 128))
    tv, ti = topk_cosine(b, a, 2, block_size=(64, 128))
    np.testing.assert_array_equal(fi, si)
    np.testing.assert_array_equal(bi, ti)
    np.testing.assert_allclose(fv, sv, atol=1e-6)
    np.testing.assert_allclose(bv, tv, atol=1e-6)


def test_normalized_flag() -> None:
    rng = np.random.default_rng(4)
    q = rng.standard_normal((50, 8)).astype(np.float32)
    keys = rng.standard_normal((60, 8)).astype(np.float32)
    s1, i1 = topk_cosine(q, keys, 2)
    s2, i2 = topk_cosine(l2_normalize(q), l2_normalize(keys), 2, normalized=True)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(s1, s2, atol=1e-6)
    assert s1.dtype == np.float32 and i1.dtype == np.int64
    assert np.all(np.abs(s1) <= 1.0 + 1e-6)


def test_float64_and_int_inputs_and_empty_queries() -> None:
    q = np.eye(3)
    keys = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 2]])
    sims, idx = topk_cosine(q, keys)
    np.testing.assert_array_equal(idx[:, 0], [1, 0, 2])
    np.testing.assert_allclose(sims[:, 0], 1.0)
    s, i = topk_cosine(np.empty((0, 3)), keys, 2)
    assert s.shape == (0, 2) and i.shape == (0, 2)


def test_zero_rows_stay_zero() -> None:
    q = np.zeros((2, 4), np.float32)
    keys = np.eye(4, dtype=np.float32)
    sims, idx = topk_cosine(q, keys)
    np.testing.assert_array_equal(sims, 0.0)
    np.testing.assert_array_equal(idx, 0)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 40),
    m=st.integers(1, 40),
    d=st.integers(1, 5),
    kfrac=st.floats(0, 1),
    bq=st.integers(1, 17),
    bk=st.integers(1, 17),
    threads=st.integers(1, 3),
    seed=st.integers(0, 2**31),
)
def test_property_exact_under_any_blocking(
    n: int, m: int, d: int, kfrac: float, bq: int, bk: int, threads: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    a, b = int_data(rng, n, d, -1, 1), int_data(rng, m, d, -1, 1)
    k = 1 + int(kfrac * (min(n, m) - 1))
    (_fv, fi), (_bv, bi) = topk_cosine_both(
        a, b, k, normalized=True, block_size=(bq, bk), threads=threads
    )
    np.testing.assert_array_equal(fi, brute(a, b, k)[1])
    np.testing.assert_array_equal(bi, brute(b, a, k)[1])


def test_merge_topk() -> None:
    p1 = (np.array([[3.0, 1.0]], np.float32), np.array([[4, 0]], np.int64))
    p2 = (np.array([[3.0, 2.0]], np.float32), np.array([[2, 9]], np.int64))
    v, i = merge_topk([p1, p2], 3)
    np.testing.assert_array_equal(i, [[2, 4, 9]])
    np.testing.assert_array_equal(v, [[3.0, 3.0, 2.0]])
    with pytest.raises(ShapeError):
        merge_topk([p1], 3)


# ------------------------------------------------------------------------ float16 storage


def test_fp16_storage_error_bound() -> None:
    rng = np.random.default_rng(5)
    q = rng.standard_normal((400, 128)).astype(np.float32)
    keys = rng.standard_normal((1200, 128)).astype(np.float32)
    q16, k16 = to_storage(q), to_storage(keys)
    assert q16.dtype == np.float16 and k16.dtype == np.float16
    assert k16.nbytes * 2 == to_storage(keys, np.float32).nbytes
    sims16, idx16 = topk_cosine(q16, k16, 1, normalized=True)
    qn, kn = l2_normalize(q), l2_normalize(keys)
    true = np.sum(qn * kn[idx16[:, 0]], axis=1)
    best, _ = topk_cosine(qn, kn, 1, normalized=True)
    # reported similarity within 2**-10 of the true one; chosen partner within 2**-9 of the best
    assert np.max(np.abs(sims16[:, 0] - true)) <= 2.0**-10
    assert np.max(best[:, 0] - true) <= 2.0**-9


def test_fp16_both_directions_computes_in_float32() -> None:
    rng = np.random.default_rng(6)
    a = to_storage(rng.standard_normal((300, 16)))
    b = to_storage(rng.standard_normal((200, 16)))
    (fv, fi), (_bv, _bi) = topk_cosine_both(a, b, 2, normalized=True, block_size=(32, 64))
    ev, ei = brute(a.astype(np.float32), b.astype(np.float32), 2)
    assert fv.dtype == np.float32
    np.testing.assert_allclose(fv, ev, atol=1e-6)
    assert np.mean(fi == ei) > 0.99


# ------------------------------------------------------------------------ bad inputs


def test_bad_shapes_and_k() -> None:
    x = np.ones((3, 4), np.float32)
    with pytest.raises(ShapeError):
        topk_cosine(np.ones(4), x)
    with pytest.raises(ShapeError):
        topk_cosine(x, np.ones((3, 5)))
    with pytest.raises(ShapeError):
        topk_cosine(x, x, 0)
    with pytest.raises(ShapeError):
        topk_cosine(x, x, 4)
    with pytest.raises(ShapeError):
        topk_cosine(x, x, True)
    with pytest.raises(ShapeError):
        topk_cosine(x, np.empty((0, 4)), 1)
    with pytest.raises(ShapeError):
        topk_cosine_both(x, np.ones((2, 4)), 3)
    with pytest.raises(ShapeError):
        topk_cosine_both(x, np.ones((2, 5)))


def test_bad_values_and_config() -> None:
    x = np.ones((3, 4), np.float32)
    bad = x.copy()
    bad[1, 2] = np.nan
    with pytest.raises(DataError):
        topk_cosine(bad, x)
    bad[1, 2] = np.inf
    with pytest.raises(DataError):
        topk_cosine_both(x, bad)
    with pytest.raises(DataError):
        topk_cosine(x, bad, normalized=True)
    with pytest.raises(DataError):
        l2_normalize(bad)
    with pytest.raises(DataError):
        topk_cosine(x.astype(np.complex64), x)
    with pytest.raises(ConfigError):
        topk_cosine(x, x, block_size=0)
    with pytest.raises(ConfigError):
        topk_cosine(x, x, block_size=(4, -1))
    with pytest.raises(ConfigError):
        topk_cosine(x, x, threads=0)
    with pytest.raises(ConfigError):
        to_storage(x, np.int8)
