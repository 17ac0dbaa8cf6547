"""Approximate top-k cosine search through FAISS, chosen by problem size, with an exact fallback.

Exact search (:mod:`mmbind.binding.search`) costs ``2 N M d`` flops: about a minute for
``10**13`` flops on two cores, half an hour for a million against a million at ``d = 128``. Above
:data:`EXACT_MAX_FLOPS` (or when asked) the keys go into a FAISS index instead:

* ``"hnsw"`` (``IndexHNSWFlat``, inner product) up to :data:`HNSW_MAX_KEYS` keys: no training,
  the best recall per unit of query time; build time ``O(M log M)``, memory ``d*4 + 2*m*8``
  bytes per key.
* ``"ivf"`` (``IndexIVFFlat``, inner product, ``sqrt``-sized coarse quantiser) above: trains on a
  sample, builds in one pass, lighter in memory; recall set by ``nprobe``.

Both can keep vectors as float16 (``storage="float16"``: ``IndexHNSWSQ`` /
``IndexIVFScalarQuantizer`` with ``QT_fp16``). Inputs are L2-normalised, so inner product is
cosine similarity. Approximate results are sorted like exact ones (similarity descending, then
index ascending) but carry no exactness or tie guarantee; :func:`estimate_recall` measures
recall@1 against exact search on a sample of queries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from mmbind.binding.search import (
    l2_normalize,
    to_storage,
    topk_cosine,
    topk_cosine_both,
    usable_cores,
)
from mmbind.errors import ConfigError, DataError, ShapeError

__all__ = [
    "EXACT_MAX_FLOPS",
    "HNSW_MAX_KEYS",
    "AnnIndex",
    "AnnParams",
    "Method",
    "choose_index",
    "choose_method",
    "estimate_recall",
    "faiss_available",
    "recall_at_1",
    "search",
    "search_both",
]

Method = Literal["auto", "exact", "hnsw", "ivf"]
Storage = Literal["float32", "float16"]

EXACT_MAX_FLOPS = 1.0e13
"""Above ``2 N M d`` of this, ``method="auto"`` goes approximate (about a minute of exact work
on two cores)."""
HNSW_MAX_KEYS = 4_000_000
"""Above this many keys ``"auto"`` builds IVF instead of HNSW (build time and memory)."""

TopK = tuple[NDArray[np.float32], NDArray[np.int64]]


@dataclass(frozen=True)
class AnnParams:
    """Index parameters; ``None`` picks a size-based default.

    Attributes
    ----------
    hnsw_m : int
        Graph degree of HNSW.
    ef_construction, ef_search : int
        HNSW beam widths at build and query time (``ef_search`` is raised to at least ``2k``).
    nlist : int, optional
        IVF lists; default ``4 * sqrt(M)`` rounded to a power of two, at most 65536.
    nprobe : int, optional
        IVF lists visited per query; default ``nlist / 32`` (at least 8).
    train_size : int, optional
        IVF training sample; default ``min(M, 64 * nlist)``.
    seed : int
        Seed of the IVF training sample.
    """

    hnsw_m: int = 16
    ef_construction: int = 40
    ef_search: int = 64
    nlist: int | None = None
    nprobe: int | None = None
    train_size: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("hnsw_m", "ef_construction", "ef_search"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{name} must be a positive int; got {v!r}")
        for name in ("nlist", "nprobe", "train_size"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise ConfigError(f"{name} must be a positive int or None; got {v!r}")


def choose_index(n: int, d: int) -> Literal["hnsw", "ivf"]:
    """FAISS index kind for ``n`` keys of dimension ``d`` (HNSW up to :data:`HNSW_MAX_KEYS`)."""
    del d  # the choice depends on the key count; d enters through EXACT_MAX_FLOPS
    return "hnsw" if n <= HNSW_MAX_KEYS else "ivf"


def choose_method(
    n_queries: int, n_keys: int, d: int, method: Method = "auto", *, both: bool = False
) -> Literal["exact", "hnsw", "ivf"]:
    """Resolve ``method``: ``"auto"`` is exact up to :data:`EXACT_MAX_FLOPS`, else an index.

    Parameters
    ----------
    n_queries, n_keys, d : int
        Problem size.
    method : {"auto", "exact", "hnsw", "ivf"}
        An explicit choice overrides the size rule.
    both : bool
        Both directions are wanted (exact does them in one pass, so its budget counts once).
    """
    if method not in ("auto", "exact", "hnsw", "ivf"):
        raise ConfigError(f"method must be auto, exact, hnsw or ivf; got {method!r}")
    if method != "auto":
        return method
    del both  # one exact pass serves both directions; approximate needs two indices anyway
    if 2.0 * n_queries * n_keys * d <= EXACT_MAX_FLOPS:
        return "exact"
    return choose_index(max(n_queries, n_keys), d)


#: What to run when faiss is missing (faiss-cpu is the optional extra ``ann``).
INSTALL_HINT = "pip install 'mmbind[ann]'"


def faiss_available() -> bool:
    """Whether faiss (the optional extra ``ann``) can be imported."""
    try:
        _faiss()
    except ConfigError:
        return False
    return True


def _faiss() -> Any:
    """The faiss module; :class:`ConfigError` naming the ``ann`` extra when it is not installed."""
    try:
        import faiss
    except ImportError as exc:
        raise ConfigError(
            f"approximate search needs faiss (the optional extra 'ann'): {INSTALL_HINT}"
        ) from exc
    return faiss


def _unit32(x: Any, name: str, normalized: bool) -> NDArray[np.float32]:
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ShapeError(f"{name} must be a 2-D array (N, d); got shape {arr.shape}")
    if arr.dtype.kind not in "fiub":
        raise DataError(f"{name} must be real-valued; got {arr.dtype}")
    if normalized:
        arr32 = np.ascontiguousarray(arr, dtype=np.float32)
        if not np.all(np.isfinite(arr32)):
            raise DataError(f"{name} contains NaN or infinite values")
        return arr32
    return np.ascontiguousarray(l2_normalize(arr))


def _sort_results(sims: NDArray[np.float32], idx: NDArray[np.int64]) -> TopK:
    """Order FAISS results like exact ones; missing entries (-1) go last with -inf."""
    sims = np.where(idx < 0, -np.inf, sims).astype(np.float32)
    key = np.where(idx < 0, np.iinfo(np.int64).max, idx)
    order = np.lexsort((key, -sims), axis=1)
    return np.take_along_axis(sims, order, axis=1), np.take_along_axis(idx, order, axis=1)


@dataclass
class AnnIndex:
    """A FAISS index over L2-normalised keys, searched by inner product (= cosine).

    Parameters
    ----------
    keys : ndarray, shape (M, d)
    kind : {"hnsw", "ivf"}
    params : AnnParams
    storage : {"float32", "float16"}
        Vector storage inside the index.
    normalized : bool
        Keys are already L2-normalised.
    threads : int, optional
        OpenMP threads for FAISS (default the usable cores).
    """

    keys: NDArray[np.floating[Any]]
    kind: Literal["hnsw", "ivf"] = "hnsw"
    params: AnnParams = field(default_factory=AnnParams)
    storage: Storage = "float32"
    normalized: bool = False
    threads: int | None = None
    index: Any = field(init=False, repr=False)
    n_keys: int = field(init=False)

    def __post_init__(self) -> None:
        if self.kind not in ("hnsw", "ivf"):
            raise ConfigError(f"index kind must be hnsw or ivf; got {self.kind!r}")
        if self.storage not in ("float32", "float16"):
            raise ConfigError(f"storage must be float32 or float16; got {self.storage!r}")
        faiss = _faiss()
        faiss.omp_set_num_threads(self.threads or usable_cores())
        x = _unit32(self.keys, "keys", self.normalized)
        if self.storage == "float16":  # round as the stored index will
            x = to_storage(x, np.float16, normalized=True).astype(np.float32)
        self.keys = x
        self.n_keys, d = x.shape
        if self.n_keys == 0:
            raise ShapeError("cannot index zero keys")
        p = self.params
        metric = faiss.METRIC_INNER_PRODUCT
        if self.kind == "hnsw":
            if self.storage == "float16":
                index = faiss.IndexHNSWSQ(d, faiss.ScalarQuantizer.QT_fp16, p.hnsw_m, metric)
            else:
                index = faiss.IndexHNSWFlat(d, p.hnsw_m, metric)
            index.hnsw.efConstruction = p.ef_construction
            index.add(x)
        else:
            nlist = p.nlist or min(65536, 1 << max(0, round(math.log2(4 * math.sqrt(self.n_keys)))))
            nlist = min(nlist, self.n_keys)
            quantizer = faiss.IndexFlatIP(d)
            if self.storage == "float16":
                index = faiss.IndexIVFScalarQuantizer(
                    quantizer, d, nlist, faiss.ScalarQuantizer.QT_fp16, metric
                )
            else:
                index = faiss.IndexIVFFlat(quantizer, d, nlist, metric)
            n_train = min(self.n_keys, p.train_size or 64 * nlist)
            rng = np.random.default_rng(p.seed)
            sample = x[np.sort(rng.choice(self.n_keys, n_train, replace=False))]
            index.train(sample)
            index.add(x)
            index.nprobe = min(nlist, p.nprobe or max(8, nlist // 32))
        self.index = index

    def search(
        self, queries: NDArray[np.floating[Any]], k: int = 1, *, normalized: bool = False
    ) -> TopK:
        """Approximate top-k keys of each query.

        Parameters
        ----------
        queries : ndarray, shape (N, d)
        k : int
            ``1 <= k <= M``.
        normalized : bool
            Queries are already L2-normalised.

        Returns
        -------
        sims : ndarray, shape (N, k), float32, descending (``-inf`` where FAISS found fewer)
        idx : ndarray, shape (N, k), int64 (``-1`` where FAISS found fewer)
        """
        q = _unit32(queries, "queries", normalized)
        if q.shape[1] != self.keys.shape[1]:
            raise ShapeError(f"queries have d={q.shape[1]}, the index d={self.keys.shape[1]}")
        if isinstance(k, bool) or not 1 <= k <= self.n_keys:
            raise ShapeError(f"k must be between 1 and the number of keys ({self.n_keys}); got {k}")
        _faiss().omp_set_num_threads(self.threads or usable_cores())
        if self.kind == "hnsw":
            self.index.hnsw.efSearch = max(self.params.ef_search, 2 * k)
        sims, idx = self.index.search(q, k)
        return _sort_results(sims.astype(np.float32), idx.astype(np.int64))


def _matching_2d(
    x: NDArray[np.floating[Any]], y: NDArray[np.floating[Any]], what: str
) -> tuple[NDArray[np.floating[Any]], NDArray[np.floating[Any]]]:
    """``x`` (N, d) and ``y`` (M, d) as arrays, or a :class:`ShapeError` naming ``what``."""
    xa, ya = np.asarray(x), np.asarray(y)
    if xa.ndim != 2 or ya.ndim != 2 or xa.shape[1] != ya.shape[1]:
        raise ShapeError(f"{what} must be (N, d), (M, d); got {xa.shape}, {ya.shape}")
    return xa, ya


def search(
    queries: NDArray[np.floating[Any]],
    keys: NDArray[np.floating[Any]],
    k: int = 1,
    *,
    method: Method = "auto",
    normalized: bool = False,
    params: AnnParams | None = None,
    storage: Storage = "float32",
    threads: int | None = None,
) -> TopK:
    """Top-k cosine search, exact or approximate by size (:func:`choose_method`) or by override.

    Parameters
    ----------
    queries : ndarray, shape (N, d)
    keys : ndarray, shape (M, d)
    k : int
    method : {"auto", "exact", "hnsw", "ivf"}
    normalized : bool
    params : AnnParams, optional
    storage : {"float32", "float16"}
        Key storage (for exact search the keys are rounded to float16 and searched in float32).
    threads : int, optional

    Returns
    -------
    sims : ndarray, shape (N, k), float32
    idx : ndarray, shape (N, k), int64
    """
    q, kk = _matching_2d(queries, keys, "queries and keys")
    chosen = choose_method(q.shape[0], kk.shape[0], q.shape[1], method)
    if chosen == "exact":
        if storage == "float16":
            kk = to_storage(kk, np.float16, normalized=normalized)
            q = _unit32(q, "queries", normalized)
            normalized = True
        return topk_cosine(q, kk, k, normalized=normalized, threads=threads)
    index = AnnIndex(kk, chosen, params or AnnParams(), storage, normalized, threads)
    return index.search(q, k, normalized=normalized)


def search_both(
    a: NDArray[np.floating[Any]],
    b: NDArray[np.floating[Any]],
    k: int = 1,
    *,
    method: Method = "auto",
    normalized: bool = False,
    params: AnnParams | None = None,
    storage: Storage = "float32",
    threads: int | None = None,
) -> tuple[TopK, TopK]:
    """Both binding directions: ``(a -> b, b -> a)``; exact in one pass, else two indices.

    Parameters and results as in :func:`search` and :func:`topk_cosine_both`.
    """
    aa, bb = _matching_2d(a, b, "a and b")
    chosen = choose_method(aa.shape[0], bb.shape[0], aa.shape[1], method, both=True)
    if chosen == "exact":
        if storage == "float16":
            aa = to_storage(aa, np.float16, normalized=normalized)
            bb = to_storage(bb, np.float16, normalized=normalized)
            normalized = True
        return topk_cosine_both(aa, bb, k, normalized=normalized, threads=threads)
    p = params or AnnParams()
    fwd = AnnIndex(bb, chosen, p, storage, normalized, threads).search(aa, k, normalized=normalized)
    back = AnnIndex(aa, chosen, p, storage, normalized, threads).search(
        bb, k, normalized=normalized
    )
    return fwd, back


def recall_at_1(approx_idx: NDArray[np.integer[Any]], exact_idx: NDArray[np.integer[Any]]) -> float:
    """Fraction of queries whose approximate top-1 is the exact top-1.

    Parameters
    ----------
    approx_idx, exact_idx : ndarray, shape (N,) or (N, k)
        Only the first column is compared.
    """
    a = np.asarray(approx_idx).reshape(len(approx_idx), -1)[:, 0]
    e = np.asarray(exact_idx).reshape(len(exact_idx), -1)[:, 0]
    if a.shape != e.shape:
        raise ShapeError(f"recall needs equal query counts; got {a.shape} and {e.shape}")
    return float(np.mean(a == e)) if a.size else 1.0


def estimate_recall(
    queries: NDArray[np.floating[Any]],
    keys: NDArray[np.floating[Any]],
    approx_idx: NDArray[np.integer[Any]],
    *,
    sample: int = 2000,
    seed: int = 0,
    normalized: bool = False,
    tol: float = 0.0,
) -> tuple[float, float]:
    """Recall@1 of approximate results, measured against exact search on a query sample.

    A hit is the exact top-1 index, or (with ``tol > 0``) a key whose similarity is within
    ``tol`` of the exact best (ties and float16 rounding).

    Parameters
    ----------
    queries : ndarray, shape (N, d)
    keys : ndarray, shape (M, d)
    approx_idx : ndarray, shape (N,) or (N, k)
    sample : int
        Queries checked (all when ``N <= sample``).
    seed : int
    normalized : bool
    tol : float

    Returns
    -------
    recall : float
    stderr : float
        Binomial standard error of the estimate (0 when every query is checked).
    """
    n = len(queries)
    ai = np.asarray(approx_idx).reshape(n, -1)[:, 0]
    rows = (
        np.arange(n)
        if n <= sample
        else np.sort(np.random.default_rng(seed).choice(n, sample, replace=False))
    )
    q = _unit32(np.asarray(queries)[rows], "queries", normalized)
    kk = _unit32(keys, "keys", normalized)
    best, exact = topk_cosine(q, kk, 1, normalized=True)
    hit = ai[rows] == exact[:, 0]
    if tol > 0:
        got = np.where(ai[rows] >= 0, np.sum(q * kk[np.maximum(ai[rows], 0)], axis=1), -np.inf)
        hit |= got >= best[:, 0] - tol
    r = float(np.mean(hit)) if rows.size else 1.0
    se = 0.0 if rows.size == n else math.sqrt(max(r * (1 - r), 1e-12) / rows.size)
    return r, se
