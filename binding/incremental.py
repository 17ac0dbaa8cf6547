"""Incremental binding: when a node uploads embeddings, compute only the new pairs.

Each sample keeps its current top-k partners ``(similarity, node, index)`` over the samples of
every complementary node. When node ``X`` arrives, one pass of :func:`topk_cosine_both` per
complementary node ``O`` gives

* ``X -> O``: the new samples' best partners on ``O``, merged into ``X``'s table;
* ``O -> X``: for each old sample its best partner on ``X``, merged into ``O``'s table only where
  it beats (or, on a tie, precedes) the current entries.

No pair between two old nodes is ever recomputed, and the tables equal a full recomputation
(:func:`bind_full`) whatever the arrival order, because ties are broken by a total order that does
not depend on it: higher similarity first, then the lower node id, then the lower sample index.

A binder can also start from nodes bound already (:meth:`IncrementalBinder.from_tables`: their
tables given, no pair computed), as a coordinator that bound its first nodes in one call does
when another node joins.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from mmbind.binding.search import merge_topk, to_storage, topk_cosine, topk_cosine_both
from mmbind.errors import ConfigError, ShapeError, UnknownNodeError

__all__ = ["BindingTable", "IncrementalBinder", "NodeId", "bind_full"]

NodeId = str | int
Complementary = Callable[[NodeId, NodeId], bool]

_IDX_BITS = 40  # global key = node_rank << 40 | sample index (2**40 samples per node)
_NO_KEY = np.iinfo(np.int64).max


def _sort_key(node: NodeId) -> tuple[bool, Any]:
    return (isinstance(node, str), node)


def _all_pairs(a: NodeId, b: NodeId) -> bool:
    return a != b


@dataclass(frozen=True)
class BindingTable:
    """Top-k partners of every sample of one node.

    Attributes
    ----------
    sims : ndarray, shape (n, k), float32
        Cosine similarity, descending per row; ``-inf`` where fewer than ``k`` partners exist.
    partner : ndarray, shape (n, k), int64
        Partner node of each entry as a position in ``node_ids`` (``-1``: no partner).
    idx : ndarray, shape (n, k), int64
        Sample index on the partner node (``-1``: no partner).
    node_ids : tuple of NodeId
        The nodes ``partner`` points into.
    """

    sims: NDArray[np.float32]
    partner: NDArray[np.int64]
    idx: NDArray[np.int64]
    node_ids: tuple[NodeId, ...]

    def partner_ids(self) -> NDArray[np.object_]:
        """Partner node ids, shape (n, k), object (``None``: no partner)."""
        lut = np.array([*self.node_ids, None], dtype=object)
        return lut[self.partner]  # -1 picks the trailing None

    def equals(self, other: BindingTable) -> bool:
        """Same partners (by node id and index) and bitwise-equal similarities."""
        return (
            np.array_equal(self.idx, other.idx)
            and np.array_equal(self.sims, other.sims)
            and bool(np.all(self.partner_ids() == other.partner_ids()))
        )


class IncrementalBinder:
    """Binding tables that grow node by node, computing only new-against-old pairs.

    Parameters
    ----------
    k : int
        Partners kept per sample.
    complementary : callable (NodeId, NodeId) -> bool, optional
        Whether two nodes bind (e.g. one holds a modality the other lacks). Must be symmetric.
        Default: every pair of distinct nodes.
    dtype : float32 or float16
        Storage dtype of the embeddings (float16 halves memory, see :func:`to_storage`).
    block_size, threads
        Passed to the exact search.
    """

    def __init__(
        self,
        k: int = 1,
        *,
        complementary: Complementary | None = None,
        dtype: DTypeLike = np.float32,
        block_size: int | tuple[int, int] | None = None,
        threads: int | None = None,
    ) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"k must be a positive int; got {k!r}")
        self.k = k
        self._complementary = complementary or _all_pairs
        self._dtype = np.dtype(dtype)
        if self._dtype not in (np.float16, np.float32):
            raise ConfigError(f"dtype must be float16 or float32; got {self._dtype}")
        self._block_size = block_size
        self._threads = threads
        self._order: list[NodeId] = []  # node ids, sorted by _sort_key
        self._emb: dict[NodeId, NDArray[np.floating[Any]]] = {}
        self._sims: dict[NodeId, NDArray[np.float32]] = {}
        self._keys: dict[NodeId, NDArray[np.int64]] = {}  # node_rank << 40 | index
        self.pairs_computed = 0
        """Similarities computed so far (to check that only new pairs are)."""

    # ------------------------------------------------------------------ state

    @property
    def nodes(self) -> list[NodeId]:
        """Node ids in tie-break order."""
        return list(self._order)

    def embeddings(self, node_id: NodeId) -> NDArray[np.floating[Any]]:
        """Stored (normalised) embeddings of a node, shape (n, d)."""
        self._require(node_id)
        return self._emb[node_id]

    def _require(self, node_id: NodeId) -> None:
        if node_id not in self._emb:
            raise UnknownNodeError(f"node {node_id!r} has not uploaded embeddings")

    def _merge(
        self,
        node_id: NodeId,
        rows: NDArray[np.intp],
        sims: NDArray[np.float32],
        keys: NDArray[np.int64],
    ) -> None:
        """Merge candidates (rows of ``node_id``, (r, j) sims and global keys) into its table."""
        if rows.size == 0:
            return
        cur = (self._sims[node_id][rows], self._keys[node_id][rows])
        val, key = merge_topk([cur, (sims, keys)], self.k)
        self._sims[node_id][rows] = val
        self._keys[node_id][rows] = key

    @classmethod
    def from_tables(
        cls,
        embeddings: Mapping[NodeId, NDArray[np.floating[Any]]],
        tables: Mapping[NodeId, BindingTable],
        k: int = 1,
        *,
        complementary: Complementary | None = None,
        dtype: DTypeLike = np.float32,
        normalized: bool = False,
        block_size: int | tuple[int, int] | None = None,
        threads: int | None = None,
    ) -> IncrementalBinder:
        """A binder over nodes bound already: their current top-k partners given, none computed.

        Parameters
        ----------
        embeddings : mapping NodeId -> ndarray (n_i, d)
            Every bound node's embeddings.
        tables : mapping NodeId -> BindingTable
            The current top-k partners of nodes in ``embeddings`` (e.g. of an earlier full
            binding; each table's ``partner`` points into its own ``node_ids``). A node
            without a table starts with no partners: only nodes whose table is never read,
            or that have none, may lack one.
        k, complementary, dtype, normalized, block_size, threads
            As in :class:`IncrementalBinder`.

        Raises
        ------
        ShapeError
            Embeddings are not 2-D or disagree on ``d``; a table is not ``(n_i, k)``, or
            points past its partner's samples.
        UnknownNodeError
            A table names a partner without embeddings, or a node without embeddings.
        """
        binder = cls(
            k, complementary=complementary, dtype=dtype, block_size=block_size, threads=threads
        )
        unknown = sorted(map(str, set(tables) - set(embeddings)))
        if unknown:
            raise UnknownNodeError(f"tables of nodes without embeddings: {', '.join(unknown)}")
        binder._order = sorted(embeddings, key=_sort_key)
        rank = {n: i for i, n in enumerate(binder._order)}
        d: int | None = None
        for node in binder._order:
            arr = np.asarray(embeddings[node])
            if arr.ndim != 2 or (d is not None and arr.shape[1] != d):
                raise ShapeError(f"embeddings of node {node!r} have shape {arr.shape}")
            d = arr.shape[1]
            binder._emb[node] = to_storage(arr, binder._dtype, normalized=normalized)
        for node in binder._order:
            n = binder._emb[node].shape[0]
            sims = np.full((n, k), -np.inf, np.float32)
            keys = np.full((n, k), _NO_KEY, np.int64)
            table = tables.get(node)
            if table is not None:
                if table.sims.shape != (n, k) or table.idx.shape != (n, k):
                    raise ShapeError(
                        f"table of node {node!r} is {table.sims.shape}; expected {(n, k)}"
                    )
                missing = [p for p in table.node_ids if p not in rank]
                if (
                    missing
                    and np.isin(table.partner, [table.node_ids.index(p) for p in missing]).any()
                ):
                    raise UnknownNodeError(f"table of node {node!r} names partners {missing}")
                lut = np.array([rank.get(p, -1) for p in table.node_ids], np.int64)
                real = table.partner >= 0
                ranks = lut[table.partner[real]]
                sizes = np.array([binder._emb[o].shape[0] for o in binder._order], np.int64)
                if (table.idx[real] < 0).any() or (table.idx[real] >= sizes[ranks]).any():
                    raise ShapeError(f"table of node {node!r} points past a partner's samples")
                keys[real] = (ranks << _IDX_BITS) | table.idx[real]
                sims[real] = table.sims[real]
            binder._sims[node] = sims
            binder._keys[node] = keys
        return binder

    # ------------------------------------------------------------------ updates

    def add_node(
        self, node_id: NodeId, emb: NDArray[np.floating[Any]], *, normalized: bool = False
    ) -> None:
        """Add a node's embeddings and bind them against every complementary node.

        Parameters
        ----------
        node_id : str or int
        emb : ndarray, shape (n, d)
        normalized : bool
            Rows are already L2-normalised.

        Raises
        ------
        ConfigError
            The node was already added.
        ShapeError
            ``emb`` is not 2-D, or its ``d`` differs from the nodes already added.
        DataError
            ``emb`` holds NaN or infinite values.
        """
        if node_id in self._emb:
            raise ConfigError(f"node {node_id!r} already uploaded embeddings")
        arr = np.asarray(emb)
        if arr.ndim != 2:
            raise ShapeError(f"embeddings must be (n, d); got shape {arr.shape}")
        if self._emb:
            d = next(iter(self._emb.values())).shape[1]
            if arr.shape[1] != d:
                raise ShapeError(f"embeddings of node {node_id!r} have d={arr.shape[1]}, not {d}")
        x = to_storage(arr, self._dtype, normalized=normalized)

        # insert the node into the tie-break order; shift the ranks stored in every key
        pos = bisect.bisect_left([_sort_key(n) for n in self._order], _sort_key(node_id))
        shift_from = np.int64(pos) << _IDX_BITS
        for keys in self._keys.values():
            real = keys != _NO_KEY
            keys[real & (keys >= shift_from)] += np.int64(1) << _IDX_BITS
        self._order.insert(pos, node_id)
        n = x.shape[0]
        self._emb[node_id] = x
        self._sims[node_id] = np.full((n, self.k), -np.inf, np.float32)
        self._keys[node_id] = np.full((n, self.k), _NO_KEY, np.int64)
        if n == 0:
            return

        for rank, other in enumerate(self._order):
            if other == node_id or not self._complementary(node_id, other):
                continue
            y = self._emb[other]
            m = y.shape[0]
            if m == 0:
                continue
            kf, kb = min(self.k, m), min(self.k, n)
            opts: dict[str, Any] = {
                "normalized": True,
                "block_size": self._block_size,
                "threads": self._threads,
            }
            if kf == kb:
                (fv, fi), (bv, bi) = topk_cosine_both(x, y, kf, **opts)
            else:
                fv, fi = topk_cosine(x, y, kf, **opts)
                bv, bi = topk_cosine(y, x, kb, **opts)
            self.pairs_computed += n * m
            self._merge(node_id, np.arange(n), fv, fi + (np.int64(rank) << _IDX_BITS))
            # old samples: only rows where the new node beats or ties the current k-th entry
            kth = self._sims[other][:, -1]
            rows = np.flatnonzero(bv[:, 0] >= kth)
            self._merge(other, rows, bv[rows], bi[rows] + (np.int64(pos) << _IDX_BITS))

    # ------------------------------------------------------------------ results

    def bindings(self, node_id: NodeId) -> BindingTable:
        """The current top-k partners of every sample of ``node_id``."""
        self._require(node_id)
        keys = self._keys[node_id]
        real = keys != _NO_KEY
        ranks = np.where(real, keys >> _IDX_BITS, -1)
        idx = np.where(real, keys & ((np.int64(1) << _IDX_BITS) - 1), -1).astype(np.int64)
        return BindingTable(
            self._sims[node_id].copy(), ranks.astype(np.int64), idx, tuple(self._order)
        )

    def all_bindings(self) -> dict[NodeId, BindingTable]:
        """Tables of every node, keyed by node id."""
        return {n: self.bindings(n) for n in self._order}


def bind_full(
    embeddings: Mapping[NodeId, NDArray[np.floating[Any]]],
    k: int = 1,
    *,
    complementary: Complementary | None = None,
    dtype: DTypeLike = np.float32,
    normalized: bool = False,
    block_size: int | tuple[int, int] | None = None,
    threads: int | None = None,
) -> dict[NodeId, BindingTable]:
    """Bind every node from scratch (the reference :class:`IncrementalBinder` must equal).

    For each node, the keys are the concatenated embeddings of its complementary nodes in node-id
    order, so exact search's "lower index wins" is "lower node id, then lower sample index".

    Parameters
    ----------
    embeddings : mapping NodeId -> ndarray (n_i, d)
    k, complementary, dtype, normalized, block_size, threads
        As in :class:`IncrementalBinder`.

    Returns
    -------
    dict NodeId -> BindingTable
    """
    comp = complementary or _all_pairs
    order = sorted(embeddings, key=_sort_key)
    emb = {n: to_storage(np.asarray(embeddings[n]), dtype, normalized=normalized) for n in order}
    out: dict[NodeId, BindingTable] = {}
    for node in order:
        x = emb[node]
        partners = [o for o in order if o != node and comp(node, o) and emb[o].shape[0] > 0]
        n = x.shape[0]
        sims = np.full((n, k), -np.inf, np.float32)
        partner = np.full((n, k), -1, np.int64)
        idx = np.full((n, k), -1, np.int64)
        if partners and n > 0:
            keys = np.concatenate([emb[o] for o in partners], axis=0)
            kk = min(k, keys.shape[0])
            s, gi = topk_cosine(
                x, keys, kk, normalized=True, block_size=block_size, threads=threads
            )
            offsets = np.cumsum([0] + [emb[o].shape[0] for o in partners])
            which = np.searchsorted(offsets, gi, side="right") - 1
            sims[:, :kk] = s
            idx[:, :kk] = gi - offsets[which]
            ranks = np.array([order.index(o) for o in partners], np.int64)
            partner[:, :kk] = ranks[which]
        out[node] = BindingTable(sims, partner, idx, tuple(order))
    return out
