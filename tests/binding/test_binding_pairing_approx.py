"""Approximate modality binding: the index's partners, and the recall it reports."""

from __future__ import annotations

import numpy as np
import pytest

from mmbind.binding.pairing import bind_by_modality, bind_by_modality_approx
from mmbind.binding.search import l2_normalize

pytest.importorskip("faiss")  # the optional extra 'ann'


def clustered(rng: np.random.Generator, n: int, centres: np.ndarray) -> np.ndarray:
    """``n`` unit rows near random ``centres`` ``(K, d)``."""
    which = rng.integers(0, len(centres), n)
    return l2_normalize(centres[which] + 0.3 * rng.standard_normal((n, centres.shape[1])))


def test_approximate_binding_reports_the_recall_it_has() -> None:
    # Prepare: two partner nodes, queries from the same clusters
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((12, 32))
    query = clustered(rng, 400, centres)
    partners = [clustered(rng, 300, centres), clustered(rng, 250, centres)]
    exact = bind_by_modality(query, partners)
    # Execute: every query checked against exact search
    approx, search = bind_by_modality_approx(query, partners, recall_sample=400, seed=0)
    # Assert: the reported recall is the share of queries bound to their exact partner
    same = (approx.partner_node == exact.partner_node) & (
        approx.partner_index == exact.partner_index
    )
    assert (search.method, search.pairs, search.sample) == ("hnsw", 400 * 550, 400)
    assert search.recall == pytest.approx(float(same.mean()))
    assert search.recall > 0.9
    assert search.stderr == 0.0
    np.testing.assert_array_equal(approx.query_index, np.arange(400))


def test_recall_on_a_sample_of_the_queries_has_a_standard_error() -> None:
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((8, 16))
    query = clustered(rng, 500, centres)
    partners = [clustered(rng, 200, centres)]
    _, search = bind_by_modality_approx(query, partners, recall_sample=100, seed=3)
    assert search.sample == 100
    assert 0.0 <= search.recall <= 1.0
    assert search.stderr > 0.0
