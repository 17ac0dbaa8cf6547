"""Exact top-k cosine similarity search in bounded memory.

Binding compares every shared-modality embedding of one node with every embedding of the
complementary nodes. The paper's code materialises the whole ``N x M`` similarity matrix; here
the product is computed in tiles of ``block_q x block_k`` similarities, and each tile is reduced
at once to the running top-k of its rows (query -> key) and, optionally, of its columns
(key -> query), so both binding directions come out of one pass over the product.

Memory is ``O(threads * block_q * block_k + (N + M) * (d + k))``: the inputs (normalised copies
when ``normalized=False``), one tile per worker and the running top-k per worker.

Exactness and ties
------------------
Every similarity is a float32 inner product computed by BLAS. The result is the exact top-k
under the total order "higher similarity first, then lower index": a key with the same similarity
as another never displaces one with a lower index, whatever the block sizes, the thread count or
the order in which tiles are processed. Ties are between *computed* similarities: a BLAS may
round the product of one pair differently in the last bit depending on where the rows fall in
its blocking (edge kernels), so two identical key rows are not guaranteed to score bit-identically;
exact ties need inputs whose products are exact in float32 (as in the tests).

Threads
-------
Work is split over ``threads`` workers (default: the usable cores), each running a
single-threaded GEMM on its own tiles and reducing them while the other worker multiplies; BLAS is
limited to one thread for the duration of the call through ``threadpoolctl`` (process-wide, restored
afterwards). Without ``threadpoolctl`` the search falls back to one worker with multithreaded BLAS.

Float16 storage
---------------
:func:`to_storage` keeps normalised embeddings as float16 (half the bytes of uploads and of the
index). Searches accept float16 inputs and compute in float32 tile by tile, so memory stays at the
float16 size plus one float32 tile. For unit vectors the similarity error is at most about
``2**-10`` (~1e-3); the benchmark reports the measured error and top-1 agreement.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from mmbind.errors import ConfigError, DataError, ShapeError

__all__ = [
    "DEFAULT_BLOCK_K",
    "DEFAULT_BLOCK_Q",
    "l2_normalize",
    "merge_topk",
    "to_storage",
    "topk_cosine",
    "topk_cosine_both",
    "usable_cores",
]

DEFAULT_BLOCK_Q = 512
"""Query rows per tile."""
DEFAULT_BLOCK_K = 4096
"""Key rows per tile (a 512 x 4096 float32 tile is 8 MiB)."""

_NO_INDEX = np.iinfo(np.int64).max  # filler index: loses every tie against a real index
_SMALL_WORK = 1 << 24  # below this many multiply-adds, one worker with default BLAS threads
_COL_CHUNK = 32  # rows per chunk in the two-level column argmax

TopK = tuple[NDArray[np.float32], NDArray[np.int64]]


def usable_cores() -> int:
    """Number of CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _check_finite(x: NDArray[Any], name: str) -> None:
    if not np.all(np.isfinite(x)):
        raise DataError(f"{name} contains NaN or infinite values")


def _as_float_matrix(x: Any, name: str) -> NDArray[np.floating[Any]]:
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ShapeError(f"{name} must be a 2-D array (N, d); got shape {arr.shape}")
    if arr.dtype.kind == "c":
        raise DataError(f"{name} must be real-valued; got {arr.dtype}")
    if arr.dtype.kind not in "fiub":
        raise DataError(f"{name} must be numeric; got {arr.dtype}")
    if arr.dtype not in (np.float16, np.float32):
        arr = arr.astype(np.float32)
    return arr


def l2_normalize(x: NDArray[np.floating[Any]], eps: float = 1e-12) -> NDArray[np.float32]:
    """Scale each row to unit L2 norm.

    Parameters
    ----------
    x : ndarray, shape (N, d)
        Any real dtype; computed in float32.
    eps : float
        Rows with a smaller norm are divided by ``eps`` (zero rows stay zero).

    Returns
    -------
    ndarray, shape (N, d), float32

    Raises
    ------
    DataError
        ``x`` holds NaN or infinite values.
    """
    x32 = np.asarray(x, dtype=np.float32)
    _check_finite(x32, "embeddings")
    norms = np.linalg.norm(x32, axis=-1, keepdims=True)
    out: NDArray[np.float32] = (x32 / np.maximum(norms, np.float32(eps))).astype(
        np.float32, copy=False
    )
    return out


def to_storage(
    emb: NDArray[np.floating[Any]],
    dtype: DTypeLike = np.float16,
    *,
    normalized: bool = False,
) -> NDArray[np.floating[Any]]:
    """Normalise embeddings and cast them to the storage dtype.

    Parameters
    ----------
    emb : ndarray, shape (N, d)
    dtype : float16 or float32
        float16 halves upload and index size; similarities then carry an error of at most about
        ``2**-10`` for unit vectors.
    normalized : bool
        Rows are already L2-normalised (skip normalisation, still cast).

    Returns
    -------
    ndarray, shape (N, d), of ``dtype``

    Raises
    ------
    ConfigError
        ``dtype`` is not float16 or float32.
    """
    dt = np.dtype(dtype)
    if dt not in (np.float16, np.float32):
        raise ConfigError(f"storage dtype must be float16 or float32; got {dt}")
    arr = _as_float_matrix(emb, "embeddings")
    _check_finite(arr, "embeddings")
    unit = np.asarray(arr, dtype=np.float32) if normalized else l2_normalize(arr)
    return unit.astype(dt, copy=False)


# --------------------------------------------------------------------------- running top-k


@dataclass
class _TopKState:
    """Running top-k of ``n`` owners: ``val`` (n, k) descending, ``idx`` (n, k) global indices."""

    val: NDArray[np.float32]
    idx: NDArray[np.int64]

    @classmethod
    def empty(cls, n: int, k: int) -> _TopKState:
        return cls(np.full((n, k), -np.inf, np.float32), np.full((n, k), _NO_INDEX, np.int64))


def _merge_sorted(
    val: NDArray[np.float32], idx: NDArray[np.int64], k: int
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Per row, the first ``k`` of (val, idx) under (val descending, idx ascending)."""
    order = np.lexsort((idx, -val), axis=-1)[:, :k]
    return np.take_along_axis(val, order, axis=1), np.take_along_axis(idx, order, axis=1)


def merge_topk(parts: list[TopK], k: int) -> TopK:
    """Merge partial top-k results of the same owners into one.

    Parameters
    ----------
    parts : list of (sims (n, k_i) float32, idx (n, k_i) int64)
        Candidates for the same ``n`` owners, e.g. searches against disjoint key sets with
        indices already made global.
    k : int
        Entries to keep per owner.

    Returns
    -------
    sims : ndarray, shape (n, k), float32, descending
    idx : ndarray, shape (n, k), int64; ties go to the lower index.
    """
    val = np.concatenate([np.asarray(p[0], np.float32) for p in parts], axis=1)
    idx = np.concatenate([np.asarray(p[1], np.int64) for p in parts], axis=1)
    if val.shape[1] < k:
        raise ShapeError(f"cannot keep {k} of {val.shape[1]} candidates per row")
    return _merge_sorted(val, idx, k)


def _merge_candidates(
    state: _TopKState,
    owners: NDArray[np.intp],
    others: NDArray[np.int64],
    vals: NDArray[np.float32],
) -> None:
    """Merge candidates ``(owner, other, val)`` into ``state`` (owners are local row numbers)."""
    if owners.size == 0:
        return
    k = state.val.shape[1]
    uniq, inverse, counts = np.unique(owners, return_inverse=True, return_counts=True)
    width = k + int(counts.max())
    cand_val = np.full((uniq.size, width), -np.inf, np.float32)
    cand_idx = np.full((uniq.size, width), _NO_INDEX, np.int64)
    cand_val[:, :k] = state.val[uniq]
    cand_idx[:, :k] = state.idx[uniq]
    # position of each candidate within its owner's slots: rank among same-owner candidates
    order = np.argsort(inverse, kind="stable")
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    slot = np.empty(owners.size, np.intp)
    slot[order] = np.arange(owners.size) - np.repeat(starts, counts)
    cand_val[inverse, k + slot] = vals
    cand_idx[inverse, k + slot] = others
    new_val, new_idx = _merge_sorted(cand_val, cand_idx, k)
    state.val[uniq] = new_val
    state.idx[uniq] = new_idx


# --------------------------------------------------------------------------- tile reductions


def _rows_top1(tile: NDArray[np.float32], state: _TopKState, r0: int, c0: int) -> None:
    """Update the top-1 of rows ``r0:r0+len(tile)`` with a tile whose keys start at ``c0``."""
    am = tile.argmax(axis=1)  # first occurrence: lowest key index on ties
    v = tile[np.arange(tile.shape[0]), am]
    best = state.val[r0 : r0 + tile.shape[0], 0]
    upd = v > best  # strict: keys seen earlier by this worker have lower indices
    if upd.any():
        best[upd] = v[upd]
        state.idx[r0 : r0 + tile.shape[0], 0][upd] = am[upd] + c0


def _cols_top1(tile: NDArray[np.float32], state: _TopKState, r0: int, c0: int) -> None:
    """Update the top-1 of key columns ``c0:c0+tile.shape[1]`` with rows starting at ``r0``.

    One pass over the tile: the maxima of chunks of ``_COL_CHUNK`` rows (a contiguous vertical
    reduction), from which the column maxima follow; only for the columns that improve is the
    first row of the maximum found, inside its chunk (a small gather), never by a transposed copy.
    """
    nr, nc = tile.shape
    r = _COL_CHUNK
    nchunk = nr // r
    head = nchunk * r
    parts = []
    if nchunk:
        parts.append(tile[:head].reshape(nchunk, r, nc).max(axis=1))
    if head < nr:
        parts.append(tile[head:].max(axis=0)[None, :])
    chunk_max = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
    cmax = chunk_max.max(axis=0)
    best = state.val[c0 : c0 + nc, 0]
    upd = np.flatnonzero(cmax > best)  # strict: rows seen earlier have lower indices
    if upd.size == 0:
        return
    best_chunk = chunk_max[:, upd].argmax(axis=0)  # first chunk holding the column maximum
    rows = np.empty(upd.size, np.intp)
    in_head = best_chunk < nchunk
    if in_head.any():
        c = upd[in_head]
        base = best_chunk[in_head] * (r * nc) + c
        g = np.take(tile.reshape(-1), base[:, None] + np.arange(0, r * nc, nc)[None, :])
        rows[in_head] = best_chunk[in_head] * r + g.argmax(axis=1)
    if not in_head.all():
        rows[~in_head] = head + tile[head:, upd[~in_head]].argmax(axis=0)
    best[upd] = cmax[upd]
    state.idx[c0 + upd, 0] = rows + r0


def _rows_topk(tile: NDArray[np.float32], state: _TopKState, r0: int, c0: int, k: int) -> None:
    """Update the top-k (k > 1) of rows ``r0:`` with a tile whose keys start at ``c0``."""
    nr, nc = tile.shape
    thr = state.val[r0 : r0 + nr, k - 1]
    mask = tile > thr[:, None]  # strict, as in _rows_top1
    if np.count_nonzero(mask) > 4 * k * nr and nc > k:
        # loose threshold (first tiles): keep only what can reach the tile's own top-k
        kth = np.partition(tile, nc - k, axis=1)[:, nc - k]
        mask &= tile >= kth[:, None]
    rows, cols = np.nonzero(mask)
    _merge_candidates(
        _TopKState(state.val[r0 : r0 + nr], state.idx[r0 : r0 + nr]),
        rows,
        cols.astype(np.int64) + c0,
        tile[rows, cols],
    )


def _cols_topk(tile: NDArray[np.float32], state: _TopKState, r0: int, c0: int, k: int) -> None:
    """Update the top-k (k > 1) of key columns ``c0:`` with rows starting at ``r0``."""
    nr, nc = tile.shape
    thr = state.val[c0 : c0 + nc, k - 1]
    mask = tile > thr[None, :]
    if np.count_nonzero(mask) > 4 * k * nc and nr > k:
        kth = np.partition(tile, nr - k, axis=0)[nr - k]
        mask &= tile >= kth[None, :]
    rows, cols = np.nonzero(mask)
    _merge_candidates(
        _TopKState(state.val[c0 : c0 + nc], state.idx[c0 : c0 + nc]),
        cols,
        rows.astype(np.int64) + r0,
        tile[rows, cols],
    )


# --------------------------------------------------------------------------- the engine


def _parse_blocks(block_size: int | tuple[int, int] | None) -> tuple[int, int]:
    if block_size is None:
        return DEFAULT_BLOCK_Q, DEFAULT_BLOCK_K
    bq, bk = (block_size, block_size) if isinstance(block_size, int) else block_size
    for b in (bq, bk):
        if isinstance(b, bool) or not isinstance(b, int | np.integer) or b < 1:
            raise ConfigError(
                f"block_size must be a positive int or a pair of them; got {block_size!r}"
            )
    return int(bq), int(bk)


def _parse_threads(threads: int | None) -> int:
    if threads is None:
        return usable_cores()
    if isinstance(threads, bool) or not isinstance(threads, int | np.integer) or threads < 1:
        raise ConfigError(f"threads must be a positive int; got {threads!r}")
    return int(threads)


def _check_k(k: int, m: int, what: str) -> None:
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise ShapeError(f"k must be an int; got {k!r}")
    if not 1 <= k <= m:
        raise ShapeError(f"k must be between 1 and the number of {what} ({m}); got {k}")


def _prepare(x: Any, name: str, normalized: bool) -> NDArray[np.floating[Any]]:
    arr = _as_float_matrix(x, name)
    _check_finite(arr, name)
    if normalized:
        return arr  # float16 stays float16; tiles are cast to float32
    return l2_normalize(arr)


@contextlib.contextmanager
def _single_threaded_blas(active: bool) -> Iterator[bool]:
    """Limit BLAS to one thread while workers run their own GEMMs; yields whether it could."""
    if not active:
        yield False
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn/scipy stacks
        yield False
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield True


def _f32(x: NDArray[np.floating[Any]]) -> NDArray[np.float32]:
    return x if x.dtype == np.float32 else x.astype(np.float32)


def _edges(n: int, parts: int) -> list[int]:
    """Boundaries splitting ``range(n)`` into ``parts`` near-equal non-empty ranges."""
    parts = max(1, min(n, parts))
    return [round(n * p / parts) for p in range(parts + 1)]


def _search(
    q: NDArray[np.floating[Any]],
    keys: NDArray[np.floating[Any]],
    k: int,
    both: bool,
    block_q: int,
    block_k: int,
    threads: int,
) -> tuple[TopK, TopK | None]:
    n, m, d = q.shape[0], keys.shape[0], q.shape[1]
    nqb = -(-n // block_q)
    nkb = -(-m // block_k)
    workers = max(1, min(threads, nqb * nkb))
    if n * m * d < _SMALL_WORK:
        workers = 1
    # Work items are (query blocks, key blocks) ranges, pulled by the workers in list order. For
    # any row a worker then meets key blocks in increasing order, and for any column increasing
    # query blocks, so the strict "better than" tests keep the lowest index among equal
    # similarities; partial results of different workers are merged under the same total order.
    if both or keys.dtype != np.float32:
        # key-major: a key block's columns usually live in one worker, so the first column
        # argmax of a key block (all columns improve) happens about once, not once per worker,
        # and a float16 key block is converted once per item, not once per query block
        n_kc = min(nkb, 4 * workers)
        n_qc = 1 if n_kc >= 2 * workers else min(nqb, -(-2 * workers // n_kc))
        k_edges, q_edges = _edges(nkb, n_kc), _edges(nqb, n_qc)
        items = [
            (q_edges[b], q_edges[b + 1], k_edges[a], k_edges[a + 1])
            for a in range(len(k_edges) - 1)
            for b in range(len(q_edges) - 1)
        ]
    else:
        n_kc = 1 if nqb >= 2 * workers else min(nkb, -(-2 * workers // nqb))
        k_edges = _edges(nkb, n_kc)
        items = [
            (i, i + 1, k_edges[c], k_edges[c + 1])
            for i in range(nqb)
            for c in range(len(k_edges) - 1)
        ]
    lock = threading.Lock()
    cursor = iter(items)

    def work() -> tuple[_TopKState, _TopKState | None]:
        rows = _TopKState.empty(n, k)
        cols = _TopKState.empty(m, k) if both else None
        buf = np.empty((block_q, block_k), np.float32)
        while True:
            with lock:
                item = next(cursor, None)
            if item is None:
                return rows, cols
            qb0, qb1, kb0, kb1 = item
            for j in range(kb0, kb1):
                c0 = j * block_k
                kj = _f32(keys[c0 : c0 + block_k])
                for i in range(qb0, qb1):
                    r0 = i * block_q
                    qi = _f32(q[r0 : r0 + block_q])
                    tile = buf[: qi.shape[0], : kj.shape[0]]
                    np.matmul(qi, kj.T, out=tile)
                    if k == 1:
                        _rows_top1(tile, rows, r0, c0)
                        if cols is not None:
                            _cols_top1(tile, cols, r0, c0)
                    else:
                        _rows_topk(tile, rows, r0, c0, k)
                        if cols is not None:
                            _cols_topk(tile, cols, r0, c0, k)

    with _single_threaded_blas(workers > 1) as limited:
        if workers > 1 and limited:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                futures = [pool.submit(work) for _ in range(workers)]
                results = [f.result() for f in futures]
        else:
            results = [work()]
    if len(results) == 1:
        r, c = results[0]
        fwd: TopK = (r.val, r.idx)
        back: TopK | None = (c.val, c.idx) if c is not None else None
        return fwd, back
    fwd = merge_topk([(r.val, r.idx) for r, _ in results], k)
    back = None
    if both:
        back = merge_topk([(c.val, c.idx) for _, c in results if c is not None], k)
    return fwd, back


def topk_cosine(
    queries: NDArray[np.floating[Any]],
    keys: NDArray[np.floating[Any]],
    k: int = 1,
    *,
    normalized: bool = False,
    block_size: int | tuple[int, int] | None = None,
    threads: int | None = None,
) -> TopK:
    """Top-k cosine similarity of every query row against every key row, exactly.

    Parameters
    ----------
    queries : ndarray, shape (N, d)
    keys : ndarray, shape (M, d)
        float16 inputs are accepted (with ``normalized=True`` they are searched as stored, in
        float32 tile by tile).
    k : int
        Neighbours per query, ``1 <= k <= M``.
    normalized : bool
        Rows are already L2-normalised.
    block_size : int or (int, int), optional
        Tile size ``(block_q, block_k)``; memory per worker is ``4 * block_q * block_k`` bytes.
        Default ``(512, 4096)``.
    threads : int, optional
        Workers; default the usable cores.

    Returns
    -------
    sims : ndarray, shape (N, k), float32, descending per row
    idx : ndarray, shape (N, k), int64; ties go to the lower key index.

    Raises
    ------
    ShapeError
        Inputs are not 2-D with the same ``d``, or ``k`` is out of range.
    DataError
        Inputs hold NaN or infinite values.
    ConfigError
        ``block_size`` or ``threads`` is invalid.
    """
    bq, bk = _parse_blocks(block_size)
    nthreads = _parse_threads(threads)
    q = _as_float_matrix(queries, "queries")
    kk = _as_float_matrix(keys, "keys")
    if q.shape[1] != kk.shape[1]:
        raise ShapeError(
            f"queries and keys must be (N, d) and (M, d) with the same d; "
            f"got {q.shape} and {kk.shape}"
        )
    _check_k(k, kk.shape[0], "keys")
    q = _prepare(q, "queries", normalized)
    kk = _prepare(kk, "keys", normalized)
    if q.shape[0] == 0:
        return np.empty((0, k), np.float32), np.empty((0, k), np.int64)
    fwd, _ = _search(q, kk, int(k), False, bq, bk, nthreads)
    return fwd


def topk_cosine_both(
    a: NDArray[np.floating[Any]],
    b: NDArray[np.floating[Any]],
    k: int = 1,
    *,
    normalized: bool = False,
    block_size: int | tuple[int, int] | None = None,
    threads: int | None = None,
) -> tuple[TopK, TopK]:
    """Top-k cosine matches in both directions from one pass over ``a @ b.T``.

    Each tile of the product is reduced along its rows (a -> b) and its columns (b -> a), so
    binding both nodes costs one matrix product instead of two.

    Parameters
    ----------
    a : ndarray, shape (N, d)
    b : ndarray, shape (M, d)
    k : int
        Neighbours per sample in each direction, ``1 <= k <= min(N, M)``.
    normalized, block_size, threads
        As in :func:`topk_cosine`.

    Returns
    -------
    a_to_b : (sims (N, k) float32, idx (N, k) int64 into ``b``)
    b_to_a : (sims (M, k) float32, idx (M, k) int64 into ``a``)
        Both equal ``topk_cosine(a, b, k)`` and ``topk_cosine(b, a, k)``; ties to the lower index.

    Raises
    ------
    ShapeError, DataError, ConfigError
        As in :func:`topk_cosine`.
    """
    bq, bk = _parse_blocks(block_size)
    nthreads = _parse_threads(threads)
    aa = _as_float_matrix(a, "a")
    bb = _as_float_matrix(b, "b")
    if aa.shape[1] != bb.shape[1]:
        raise ShapeError(
            f"a and b must be (N, d) and (M, d) with the same d; got {aa.shape} and {bb.shape}"
        )
    _check_k(k, min(aa.shape[0], bb.shape[0]), "rows of the smaller side")
    aa = _prepare(aa, "a", normalized)
    bb = _prepare(bb, "b", normalized)
    fwd, back = _search(aa, bb, int(k), True, bq, bk, nthreads)
    assert back is not None
    return fwd, back
