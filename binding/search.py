"""Exact top-k cosine similarity search (reference version; blocked search lands with issue 5)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from mmbind.errors import ShapeError


def l2_normalize(x: NDArray[np.floating], eps: float = 1e-12) -> NDArray[np.float32]:
    """Scale each row of ``x`` (shape ``(N, d)``) to unit L2 norm."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, eps)).astype(np.float32, copy=False)


def topk_cosine(
    queries: NDArray[np.floating],
    keys: NDArray[np.floating],
    k: int = 1,
    *,
    normalized: bool = False,
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Top-k cosine similarity of every query row against every key row.

    Parameters
    ----------
    queries : ndarray, shape (N, d)
    keys : ndarray, shape (M, d)
    k : int
        Neighbours per query, ``1 <= k <= M``.
    normalized : bool
        Rows are already L2-normalised.

    Returns
    -------
    sims : ndarray, shape (N, k), float32, descending per row
    idx : ndarray, shape (N, k), int64; ties go to the lower key index.
    """
    if queries.ndim != 2 or keys.ndim != 2 or queries.shape[1] != keys.shape[1]:
        raise ShapeError(
            f"queries and keys must be (N, d) and (M, d) with the same d; "
            f"got {queries.shape} and {keys.shape}"
        )
    if not 1 <= k <= keys.shape[0]:
        raise ShapeError(f"k must be between 1 and the number of keys ({keys.shape[0]}); got {k}")
    q = queries.astype(np.float32) if normalized else l2_normalize(queries)
    kk = keys.astype(np.float32) if normalized else l2_normalize(keys)
    sims = q @ kk.T
    idx = np.argsort(-sims, axis=1, kind="stable")[:, :k].astype(np.int64)
    return np.take_along_axis(sims, idx, axis=1), idx
