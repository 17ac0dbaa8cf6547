"""Tests of modality and label binding."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmbind.binding.pairing import Bindings, bind_by_label, bind_by_modality, pairing_accuracy
from mmbind.binding.search import l2_normalize
from mmbind.errors import BindingError, DataError, ShapeError


def brute_force(query: np.ndarray, partners: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Global argmax (first maximum wins) over the dense similarity of the concatenation."""
    keys = np.concatenate(partners, axis=0).astype(np.float64)
    sims = query.astype(np.float64) @ keys.T
    best = sims.argmax(axis=1)
    owner = np.concatenate([np.full(len(p), j) for j, p in enumerate(partners)]).astype(int)
    row = np.concatenate([np.arange(len(p)) for p in partners]).astype(int)
    return np.stack([owner[best], row[best]], axis=1), sims.max(axis=1)


small_ints = st.integers(min_value=-2, max_value=2)


@st.composite
def integer_problem(draw: st.DrawFn) -> tuple[np.ndarray, list[np.ndarray]]:
    """Small integer vectors: dot products are exact, so ties across partners are real ties."""
    d = draw(st.integers(1, 3))
    sizes = draw(st.lists(st.integers(0, 5), min_size=1, max_size=4))
    if sum(sizes) == 0:
        sizes[0] = 1
    n = draw(st.integers(0, 6))

    def matrix(rows: int) -> np.ndarray:
        flat = draw(st.lists(small_ints, min_size=rows * d, max_size=rows * d))
        return np.array(flat, dtype=np.float32).reshape(rows, d)

    return matrix(n), [matrix(m) for m in sizes]


@settings(max_examples=150, deadline=None)
@given(integer_problem())
def test_bind_by_modality_equals_brute_force_including_ties(
    problem: tuple[np.ndarray, list[np.ndarray]],
) -> None:
    # Prepare
    query, partners = problem
    # Execute: normalized=True takes the rows as given, so similarities are exact dot products
    got = bind_by_modality(query, partners, normalized=True)
    # Assert
    assert len(got) == query.shape[0]
    np.testing.assert_array_equal(got.query_index, np.arange(query.shape[0]))
    if query.shape[0]:
        want, best = brute_force(query, partners)
        np.testing.assert_array_equal(got.partner_node, want[:, 0])
        np.testing.assert_array_equal(got.partner_index, want[:, 1])
        np.testing.assert_array_equal(got.similarity, best.astype(np.float32))
    assert got.partner_node.dtype == np.int64 and got.partner_index.dtype == np.int64
    assert got.similarity.dtype == np.float32


def test_tie_across_partners_goes_to_lowest_node() -> None:
    row = np.array([[0.6, 0.8]], dtype=np.float32)
    partners = [np.zeros((0, 2), np.float32), np.array([[1.0, 0.0], [0.6, 0.8]], np.float32), row]
    got = bind_by_modality(row, partners)
    assert (int(got.partner_node[0]), int(got.partner_index[0])) == (1, 1)
    assert float(got.similarity[0]) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(5))
def test_bind_by_modality_random_normalised_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    query = l2_normalize(rng.normal(size=(20, 8)))
    partners = [l2_normalize(rng.normal(size=(m, 8))) for m in (7, 0, 11)]
    got = bind_by_modality(query * 3.0, [p * 2.0 for p in partners], normalized=False)
    want, best = brute_force(query, partners)
    np.testing.assert_array_equal(np.stack([got.partner_node, got.partner_index], 1), want)
    np.testing.assert_allclose(got.similarity, best, atol=1e-5)


def test_bind_by_modality_errors() -> None:
    q = np.ones((3, 4), np.float32)
    with pytest.raises(BindingError, match="no partner"):
        bind_by_modality(q, [])
    with pytest.raises(BindingError, match="zero samples"):
        bind_by_modality(q, [np.zeros((0, 4), np.float32)])
    with pytest.raises(ShapeError):
        bind_by_modality(q, [np.ones((2, 3), np.float32)])
    with pytest.raises(ShapeError):
        bind_by_modality(q[0], [np.ones((2, 4), np.float32)])
    bad = q.copy()
    bad[1, 1] = np.nan
    with pytest.raises(DataError):
        bind_by_modality(bad, [np.ones((2, 4), np.float32)])


def test_bind_by_label_pairs_same_class_only_and_drops_absent_classes() -> None:
    # Prepare
    rng = np.random.default_rng(0)
    query = rng.integers(0, 5, size=200)
    partners = [rng.integers(0, 3, size=30), rng.integers(2, 4, size=20)]  # class 4 nowhere
    # Execute
    got = bind_by_label(query, partners, seed=7)
    # Assert
    assert len(got) == int((query != 4).sum())
    assert set(got.query_index.tolist()) == set(np.flatnonzero(query != 4).tolist())
    assert np.all(np.diff(got.query_index) > 0)
    for qi, node, row in zip(got.query_index, got.partner_node, got.partner_index, strict=True):
        assert query[qi] == partners[node][row]
    assert pairing_accuracy(got, query, partners) == 1.0
    np.testing.assert_array_equal(got.similarity, np.ones(len(got), np.float32))
    # Class 3 exists only at partner 1; classes 0..1 only at partner 0: both partners are used.
    assert set(got.partner_node.tolist()) == {0, 1}


def test_bind_by_label_is_deterministic_by_seed() -> None:
    rng = np.random.default_rng(1)
    query = rng.integers(0, 3, size=100)
    partners = [rng.integers(0, 3, size=50), rng.integers(0, 3, size=50)]
    a = bind_by_label(query, partners, seed=3)
    b = bind_by_label(query, partners, seed=3)
    c = bind_by_label(query, partners, seed=4)
    for field in ("query_index", "partner_node", "partner_index"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not (
        np.array_equal(a.partner_node, c.partner_node)
        and np.array_equal(a.partner_index, c.partner_index)
    )


def test_bind_by_label_scores_with_embeddings() -> None:
    rng = np.random.default_rng(2)
    query = np.array([0, 1, 1, 2])
    partners = [np.array([1, 0]), np.array([2, 2, 1])]
    q_emb = rng.normal(size=(4, 5))
    p_embs = [rng.normal(size=(2, 5)), rng.normal(size=(3, 5))]
    got = bind_by_label(query, partners, seed=0, similarity=(q_emb, p_embs))
    for k in range(len(got)):
        a = q_emb[got.query_index[k]]
        b = p_embs[got.partner_node[k]][got.partner_index[k]]
        cos = a @ b / np.linalg.norm(a) / np.linalg.norm(b)
        assert float(got.similarity[k]) == pytest.approx(cos, abs=1e-5)
    with pytest.raises(ShapeError):
        bind_by_label(query, partners, seed=0, similarity=(q_emb[:3], p_embs))


def test_bind_by_label_errors_and_empty() -> None:
    with pytest.raises(BindingError):
        bind_by_label(np.array([0, 1]), [], seed=0)
    with pytest.raises(ShapeError):
        bind_by_label(np.array([0.5, 1.0]), [np.array([0])], seed=0)
    empty = bind_by_label(np.array([5, 6]), [np.array([0, 1])], seed=0)
    assert len(empty) == 0


def test_pairing_accuracy_hand_cases() -> None:
    query = np.array([0, 1, 2, 1])
    partners = [np.array([1, 0]), np.array([2, 2, 1])]
    bindings = Bindings(
        query_index=np.array([0, 1, 2, 3]),
        partner_node=np.array([0, 0, 1, 1]),
        partner_index=np.array([1, 1, 0, 0]),
        similarity=np.ones(4),
    )  # 0->0 ok, 1->0 wrong, 2->2 ok, 1->2 wrong
    assert pairing_accuracy(bindings, query, partners) == pytest.approx(0.5)
    assert np.isnan(pairing_accuracy(bind_by_label([9], partners, seed=0), query, partners))
    out_of_range = Bindings(np.array([0]), np.array([2]), np.array([0]), np.ones(1))
    with pytest.raises(ShapeError):
        pairing_accuracy(out_of_range, query, partners)


def test_bindings_validates_lengths() -> None:
    with pytest.raises(ShapeError):
        Bindings(np.arange(3), np.zeros(3), np.zeros(2), np.ones(3))
