"""FAISS approximate search: recall on a clustered set, the size switch and its override."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from numpy.typing import NDArray

from mmbind.binding import ann
from mmbind.binding.ann import (
    AnnIndex,
    AnnParams,
    choose_index,
    choose_method,
    estimate_recall,
    recall_at_1,
    search,
    search_both,
)
from mmbind.binding.search import l2_normalize, topk_cosine, topk_cosine_both
from mmbind.errors import ConfigError, DataError, ShapeError


def clustered(n: int, d: int = 32, centres: int = 40, seed: int = 0) -> NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    c = np.random.default_rng(99).standard_normal((centres, d))
    x = c[rng.integers(0, centres, n)] + 0.3 * rng.standard_normal((n, d))
    return l2_normalize(x)


@pytest.fixture(scope="module")
def data() -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    return clustered(800, seed=1), clustered(4000, seed=2)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
@pytest.mark.parametrize("storage", ["float32", "float16"])
def test_recall_on_clustered_set(
    data: tuple[NDArray[np.float32], NDArray[np.float32]], kind: str, storage: str
) -> None:
    q, keys = data
    sims, idx = search(q, keys, 3, method=kind, normalized=True, storage=storage)  # type: ignore[arg-type]
    assert sims.shape == (800, 3) and idx.dtype == np.int64 and sims.dtype == np.float32
    assert np.all(np.diff(sims, axis=1) <= 0)
    _, exact = topk_cosine(q, keys, 1, normalized=True)
    assert recall_at_1(idx, exact) >= 0.95
    r, se = estimate_recall(q, keys, idx, sample=300, normalized=True, tol=1e-3)
    assert r >= 0.95 and se > 0


def test_exact_method_is_the_exact_search(
    data: tuple[NDArray[np.float32], NDArray[np.float32]],
) -> None:
    q, keys = data
    _s1, i1 = search(q, keys, 2, method="exact")
    _s2, i2 = topk_cosine(q, keys, 2)
    np.testing.assert_array_equal(i1, i2)
    (f, b) = search_both(q, keys, 1, method="exact")
    (g, h) = topk_cosine_both(q, keys, 1)
    np.testing.assert_array_equal(f[1], g[1])
    np.testing.assert_array_equal(b[1], h[1])


def test_search_both_approximate(data: tuple[NDArray[np.float32], NDArray[np.float32]]) -> None:
    q, keys = data
    (_fs, fi), (_bs, bi) = search_both(q, keys, 1, method="hnsw")
    assert fi.shape == (800, 1) and bi.shape == (4000, 1)
    (_, efi), (_, ebi) = topk_cosine_both(q, keys, 1)
    assert recall_at_1(fi, efi) >= 0.95 and recall_at_1(bi, ebi) >= 0.95


def test_size_switch_and_override(monkeypatch: pytest.MonkeyPatch) -> None:
    assert choose_method(1000, 1000, 128) == "exact"
    assert choose_method(1_000_000, 1_000_000, 128) == "hnsw"
    assert choose_method(10_000_000, 10_000_000, 128) == "ivf"
    assert choose_method(1_000_000, 1_000_000, 128, "exact") == "exact"
    assert choose_method(10, 10, 4, "ivf") == "ivf"
    assert choose_index(100, 8) == "hnsw" and choose_index(10**8, 8) == "ivf"
    with pytest.raises(ConfigError):
        choose_method(10, 10, 4, "annoy")  # type: ignore[arg-type]
    # auto goes approximate above the threshold
    monkeypatch.setattr(ann, "EXACT_MAX_FLOPS", 10.0)
    q, keys = clustered(50, 8), clustered(300, 8, seed=3)
    assert choose_method(50, 300, 8) == "hnsw"
    _, idx = search(q, keys)
    _, exact = topk_cosine(q, keys)
    assert recall_at_1(idx, exact) >= 0.9


def test_ann_ties_sorted_and_missing_marked() -> None:
    keys = np.tile(np.eye(4, dtype=np.float32), (3, 1))  # each direction three times
    ix = AnnIndex(keys, "hnsw", AnnParams(ef_search=32))
    sims, idx = ix.search(np.eye(4, dtype=np.float32), 3)
    np.testing.assert_allclose(sims, 1.0, atol=1e-6)
    assert np.all(np.diff(idx, axis=1) > 0)  # equal sims ordered by index
    ivf = AnnIndex(keys, "ivf", AnnParams(nlist=4, nprobe=1))
    s, i = ivf.search(np.eye(4, dtype=np.float32), 12)
    assert np.all((i >= 0) | (s == -np.inf))


def test_bad_inputs() -> None:
    x = clustered(20, 8)
    with pytest.raises(ConfigError):
        AnnParams(hnsw_m=0)
    with pytest.raises(ConfigError):
        AnnParams(nprobe=-1)
    with pytest.raises(ConfigError):
        AnnIndex(x, "lsh")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        AnnIndex(x, storage="int8")  # type: ignore[arg-type]
    with pytest.raises(ShapeError):
        AnnIndex(np.empty((0, 8), np.float32))
    ix = AnnIndex(x)
    with pytest.raises(ShapeError):
        ix.search(np.ones((2, 9), np.float32))
    with pytest.raises(ShapeError):
        ix.search(x, 21)
    with pytest.raises(DataError):
        ix.search(np.full((2, 8), np.nan, np.float32))
    with pytest.raises(ShapeError):
        search(x, np.ones((3, 9)))
    with pytest.raises(ShapeError):
        recall_at_1(np.zeros(3), np.zeros(4))
    assert recall_at_1(np.array([1, 2, 3]), np.array([[1], [0], [3]])) == pytest.approx(2 / 3)


def test_missing_faiss_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: faiss unimportable, as in an install without the 'ann' extra
    monkeypatch.setitem(sys.modules, "faiss", None)
    x = clustered(64)

    # Execute / Assert
    with pytest.raises(ConfigError, match=r"pip install 'mmbind\[ann\]'"):
        AnnIndex(x, "hnsw")
