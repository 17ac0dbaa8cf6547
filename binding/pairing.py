"""Binding: pair samples of one node with samples of others into pseudo-complete tuples.

Two binding modes of MMBind (Ouyang et al., "MMBind", SenSys 2025, Sec. 4.2):

* **modality binding** — through a shared modality: every query sample is bound to its single
  most similar sample (cosine similarity of shared-modality embeddings) over all partner nodes;
  several queries may bind to the same partner sample (many-to-one, as in the paper's code);
* **label binding** — every query sample is bound to a random partner sample of the same class.

Modality binding is exact (:func:`bind_by_modality`) or, for large problems, approximate
(:func:`bind_by_modality_approx`: a FAISS index, its recall measured on a sample).

Bindings are index tables; the arrays they index stay on their nodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mmbind.binding.search import l2_normalize, topk_cosine
from mmbind.errors import BindingError, DataError, ShapeError

__all__ = [
    "ANN_THRESHOLD",
    "ApproximateSearch",
    "Bindings",
    "bind_by_label",
    "bind_by_modality",
    "bind_by_modality_approx",
    "pairing_accuracy",
]

ANN_THRESHOLD = 1_000_000_000
"""Query x partner pairs of one binding above which the coordinator binds approximately
(run config ``ann-threshold``): a billion pairs are some seconds of exact search; UTD-MHAD and
the synthetic runs bind far below it."""


@dataclass(frozen=True, eq=False)
class Bindings:
    """A table of ``P`` bindings from query samples to partner samples.

    Attributes
    ----------
    query_index : ndarray, shape (P,), int64
        Row of the query array.
    partner_node : ndarray, shape (P,), int64
        Index into the sequence of partner arrays the bindings were made against.
    partner_index : ndarray, shape (P,), int64
        Row within that partner's array.
    similarity : ndarray, shape (P,), float32
        Cosine similarity of the bound pair (1.0 for label bindings without embeddings).

    Notes
    -----
    The arrays are coerced to the dtypes above. Compared by identity (``eq=False``): arrays
    have no single truth value.
    """

    query_index: NDArray[np.int64]
    partner_node: NDArray[np.int64]
    partner_index: NDArray[np.int64]
    similarity: NDArray[np.float32]

    def __post_init__(self) -> None:
        for name, dtype in (
            ("query_index", np.int64),
            ("partner_node", np.int64),
            ("partner_index", np.int64),
            ("similarity", np.float32),
        ):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=dtype))
        fields: dict[str, NDArray[np.generic]] = {
            "query_index": self.query_index,
            "partner_node": self.partner_node,
            "partner_index": self.partner_index,
            "similarity": self.similarity,
        }
        lengths = {name: a.shape for name, a in fields.items()}
        first = lengths["query_index"]
        if len(first) != 1 or any(shape != first for shape in lengths.values()):
            raise ShapeError(f"binding arrays must all have the same shape (P,); got {lengths}")

    def __len__(self) -> int:
        return int(self.query_index.shape[0])


def _empty_bindings() -> Bindings:
    e = np.zeros(0, dtype=np.int64)
    return Bindings(e, e.copy(), e.copy(), np.zeros(0, dtype=np.float32))


def _check_matrix(name: str, x: ArrayLike, d: int | None = None) -> NDArray[np.float32]:
    a = np.asarray(x, dtype=np.float32)
    if a.ndim != 2 or (d is not None and a.shape[1] != d):
        want = "(n, d)" if d is None else f"(n, {d})"
        raise ShapeError(f"{name} must have shape {want}; got {a.shape}")
    if not np.isfinite(a).all():
        raise DataError(f"{name} holds NaN or infinite values")
    return a


def _check_labels(name: str, y: ArrayLike) -> NDArray[np.int64]:
    a = np.asarray(y)
    if a.ndim != 1:
        raise ShapeError(f"{name} must have shape (n,); got {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise ShapeError(f"{name} must hold integer class ids; got dtype {a.dtype}")
    return a.astype(np.int64, copy=False)


def _check_partners(partners: Sequence[object]) -> None:
    if len(partners) == 0:
        raise BindingError("nothing to bind against: no partner node was given")


def _split_global_index(
    idx: NDArray[np.int64], sizes: Sequence[int]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Map rows of the concatenated partners to ``(partner_node, partner_index)``."""
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    node = np.searchsorted(offsets, idx, side="right").astype(np.int64) - 1
    return node, (idx - offsets[node]).astype(np.int64)


def _checked_inputs(
    query: ArrayLike, partners: Sequence[ArrayLike]
) -> tuple[NDArray[np.float32], list[NDArray[np.float32]], list[int]]:
    """The query ``(n, d)``, each partner's keys ``(m_j, d)`` and their sizes, all checked."""
    _check_partners(partners)
    q = _check_matrix("query", query)
    keys = [_check_matrix(f"partners[{j}]", p, q.shape[1]) for j, p in enumerate(partners)]
    sizes = [k.shape[0] for k in keys]
    if sum(sizes) == 0:
        raise BindingError("nothing to bind against: every partner node has zero samples")
    return q, keys, sizes


def bind_by_modality(
    query: ArrayLike, partners: Sequence[ArrayLike], *, normalized: bool = True
) -> Bindings:
    """Bind every query sample to its most similar sample over all partners (top-1 cosine).

    Parameters
    ----------
    query : ndarray, shape (N, d)
        Shared-modality embeddings of the querying node.
    partners : sequence of ndarray, shapes (M_j, d)
        Shared-modality embeddings of each partner node (a partner may have ``M_j = 0``).
    normalized : bool
        Rows are already L2-normalised (as uploaded to the binding service).

    Returns
    -------
    Bindings
        ``P == N`` bindings in query order; ties go to the lowest
        ``(partner_node, partner_index)``.

    Raises
    ------
    BindingError
        If no partner is given or all partners are empty.
    ShapeError
        On arrays that are not 2-D or disagree on ``d``.
    DataError
        On NaN or infinite values.
    """
    q, keys, sizes = _checked_inputs(query, partners)
    if q.shape[0] == 0:
        return _empty_bindings()
    sims, idx = topk_cosine(q, np.concatenate(keys, axis=0), 1, normalized=normalized)
    node, row = _split_global_index(idx[:, 0], sizes)
    return Bindings(
        query_index=np.arange(q.shape[0], dtype=np.int64),
        partner_node=node,
        partner_index=row,
        similarity=sims[:, 0].astype(np.float32),
    )


@dataclass(frozen=True)
class ApproximateSearch:
    """How an approximate modality binding searched, and how well.

    Attributes
    ----------
    method : {"hnsw", "ivf"}
        The FAISS index the partners' embeddings went into (``ann.choose_index``).
    pairs : int
        ``N x M``: query samples times partner samples (what exact search would have scored).
    recall : float
        Recall@1 against exact search on ``sample`` query samples: the share whose approximate
        partner is the exact one.
    stderr : float
        Binomial standard error of ``recall`` (0 when every query was checked).
    sample : int
        Query samples checked against exact search.
    """

    method: str
    pairs: int
    recall: float
    stderr: float
    sample: int


def bind_by_modality_approx(
    query: ArrayLike,
    partners: Sequence[ArrayLike],
    *,
    recall_sample: int = 1000,
    seed: int = 0,
    normalized: bool = True,
) -> tuple[Bindings, ApproximateSearch]:
    """:func:`bind_by_modality` through an approximate index (FAISS), with its measured recall.

    The partners' embeddings, concatenated, go into an HNSW index (an IVF one above
    :data:`mmbind.binding.ann.HNSW_MAX_KEYS` keys); every query takes its approximate top-1.
    Recall@1 is measured against exact search on ``recall_sample`` queries drawn with ``seed``.

    Parameters
    ----------
    query : ndarray, shape (N, d)
    partners : sequence of ndarray, shapes (M_j, d)
    recall_sample : int
        Queries checked against exact search (all when ``N`` is smaller).
    seed : int
        Seed of the recall sample and of an IVF index's training sample.
    normalized : bool
        Rows are already L2-normalised.

    Returns
    -------
    Bindings
        ``P == N`` bindings in query order (ties carry no guarantee).
    ApproximateSearch
        The index kind, the problem size and the measured recall.

    Raises
    ------
    ConfigError
        faiss (the optional extra ``ann``) is not installed.
    BindingError, ShapeError, DataError
        As :func:`bind_by_modality`.
    """
    from mmbind.binding import ann  # faiss is optional: imported only when asked for

    q, keys, sizes = _checked_inputs(query, partners)
    pairs = q.shape[0] * sum(sizes)
    kind = ann.choose_index(sum(sizes), q.shape[1])
    if q.shape[0] == 0:
        return _empty_bindings(), ApproximateSearch(kind, 0, 1.0, 0.0, 0)
    flat = np.concatenate(keys, axis=0)
    index = ann.AnnIndex(flat, kind, ann.AnnParams(seed=seed), normalized=normalized)
    sims, idx = index.search(q, 1, normalized=normalized)
    recall, stderr = ann.estimate_recall(
        q, flat, idx, sample=recall_sample, seed=seed, normalized=normalized
    )
    found = idx[:, 0] >= 0  # FAISS may find nothing for a query: it stays unbound
    node, row = _split_global_index(idx[found, 0], sizes)
    bindings = Bindings(
        query_index=np.flatnonzero(found).astype(np.int64),
        partner_node=node,
        partner_index=row,
        similarity=sims[found, 0].astype(np.float32),
    )
    checked = min(q.shape[0], recall_sample)
    return bindings, ApproximateSearch(kind, int(pairs), recall, stderr, checked)


def bind_by_label(
    query_labels: ArrayLike,
    partner_labels: Sequence[ArrayLike],
    *,
    seed: int,
    similarity: tuple[ArrayLike, Sequence[ArrayLike]] | None = None,
) -> Bindings:
    """Bind every query sample to a random partner sample of the same class.

    The partner sample is drawn uniformly among all samples of that class over all partners
    (so many-to-one, like modality binding), with ``numpy.random.default_rng(seed)``, class by
    class in ascending order: the result depends only on the inputs and ``seed``.

    Parameters
    ----------
    query_labels : ndarray, shape (N,), integer
    partner_labels : sequence of ndarray, shapes (M_j,), integer
    seed : int
    similarity : (query_emb (N, d), partner_embs sequence of (M_j, d)), optional
        Embeddings to score each binding by cosine similarity; without them every binding
        scores 1.0.

    Returns
    -------
    Bindings
        ``P <= N`` bindings in ascending query order; samples whose class no partner holds are
        left out.

    Raises
    ------
    BindingError
        If no partner is given.
    ShapeError
        On label arrays that are not 1-D integer arrays or embeddings that do not match them.
    DataError
        On non-finite embeddings.
    """
    _check_partners(partner_labels)
    yq = _check_labels("query_labels", query_labels)
    yp = [_check_labels(f"partner_labels[{j}]", y) for j, y in enumerate(partner_labels)]
    sizes = [y.shape[0] for y in yp]
    all_partner = np.concatenate(yp) if yp else np.zeros(0, dtype=np.int64)

    rng = np.random.default_rng(seed)
    chosen_query: list[NDArray[np.int64]] = []
    chosen_global: list[NDArray[np.int64]] = []
    for label in np.unique(yq):
        candidates = np.flatnonzero(all_partner == label)
        if candidates.size == 0:
            continue
        queries = np.flatnonzero(yq == label)
        chosen_query.append(queries)
        chosen_global.append(candidates[rng.integers(0, candidates.size, size=queries.size)])
    if not chosen_query:
        return _empty_bindings()
    q_idx = np.concatenate(chosen_query).astype(np.int64)
    g_idx = np.concatenate(chosen_global).astype(np.int64)
    order = np.argsort(q_idx, kind="stable")
    q_idx, g_idx = q_idx[order], g_idx[order]
    node, row = _split_global_index(g_idx, sizes)

    if similarity is None:
        sims = np.ones(q_idx.shape[0], dtype=np.float32)
    else:
        q_emb_raw, p_embs_raw = similarity
        q_emb = _check_matrix("query embeddings", q_emb_raw)
        if q_emb.shape[0] != yq.shape[0] or len(p_embs_raw) != len(yp):
            raise ShapeError("similarity embeddings must match the labels one row per sample")
        p_embs = []
        for j, (e, y) in enumerate(zip(p_embs_raw, yp, strict=True)):
            m = _check_matrix(f"partner embeddings[{j}]", e, q_emb.shape[1])
            if m.shape[0] != y.shape[0]:
                raise ShapeError(
                    f"partner embeddings[{j}] has {m.shape[0]} rows for {y.shape[0]} labels"
                )
            p_embs.append(m)
        qn = l2_normalize(q_emb)[q_idx]
        pn = l2_normalize(np.concatenate(p_embs, axis=0))[g_idx]
        sims = np.einsum("pd,pd->p", qn, pn).astype(np.float32)
    return Bindings(q_idx, node, row, sims)


def pairing_accuracy(
    bindings: Bindings, query_labels: ArrayLike, partner_labels: Sequence[ArrayLike]
) -> float:
    """Share of bindings whose two samples have the same class (for evaluation only).

    Parameters
    ----------
    bindings : Bindings
    query_labels : ndarray, shape (N,)
    partner_labels : sequence of ndarray, shapes (M_j,)

    Returns
    -------
    float
        In ``[0, 1]``; ``nan`` when there are no bindings.

    Raises
    ------
    ShapeError
        If a binding points outside the label arrays.
    """
    yq = _check_labels("query_labels", query_labels)
    yp = [_check_labels(f"partner_labels[{j}]", y) for j, y in enumerate(partner_labels)]
    if len(bindings) == 0:
        return float("nan")
    if bindings.query_index.min() < 0 or bindings.query_index.max() >= yq.shape[0]:
        raise ShapeError("bindings refer to query samples outside query_labels")
    if bindings.partner_node.min() < 0 or bindings.partner_node.max() >= len(yp):
        raise ShapeError("bindings refer to partner nodes outside partner_labels")
    hits = 0
    for j, y in enumerate(yp):
        sel = bindings.partner_node == j
        if not sel.any():
            continue
        rows = bindings.partner_index[sel]
        if rows.min() < 0 or rows.max() >= y.shape[0]:
            raise ShapeError(f"bindings refer to rows outside partner_labels[{j}]")
        hits += int((yq[bindings.query_index[sel]] == y[rows]).sum())
    return hits / len(bindings)
