"""How good a binding is, seen through evaluation labels (never used for training).

Two views of the report's figures: which class a sample was bound to
(:func:`pairing_confusion`, the pairing accuracy is its trace over its sum), and how
similar the shared-modality embeddings of two nodes are, class by class
(:func:`class_similarity`; a strong diagonal is what makes binding work; Ouyang et
al., "MMBind", SenSys 2025, Fig. 5).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mmbind.errors import ShapeError

__all__ = ["class_similarity", "pairing_confusion"]


def _labels(name: str, y: ArrayLike, num_classes: int) -> NDArray[np.int64]:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ShapeError(f"{name} must be 1-D; got shape {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        raise ShapeError(f"{name} must lie in [0, {num_classes}); got {arr.min()}..{arr.max()}")
    return arr.astype(np.int64, copy=False)


def pairing_confusion(
    query_labels: ArrayLike, partner_labels: ArrayLike, num_classes: int
) -> NDArray[np.int64]:
    """Counts of (true class of a sample, true class of the sample it was bound to).

    Parameters
    ----------
    query_labels, partner_labels : array_like, shape (P,)
        Class of each bound sample and of its partner, in ``[0, num_classes)``.
    num_classes : int

    Returns
    -------
    ndarray, shape (num_classes, num_classes), int64
        Rows: the sample's class; columns: its partner's.
    """
    q = _labels("query_labels", query_labels, num_classes)
    p = _labels("partner_labels", partner_labels, num_classes)
    if q.shape != p.shape:
        raise ShapeError(f"query and partner labels differ in length: {q.size} vs {p.size}")
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (q, p), 1)
    return cm


def class_similarity(
    pairs: Sequence[tuple[ArrayLike, ArrayLike, ArrayLike, ArrayLike]],
    num_classes: int,
    max_rows: int = 4096,
) -> NDArray[np.float64]:
    """Mean cosine similarity between two nodes' embeddings, per pair of classes.

    Parameters
    ----------
    pairs : sequence of (x, x_labels, y, y_labels)
        ``x`` ``(N, D)`` and ``y`` ``(M, D)``: L2-normalised embeddings of the shared
        modality on two nodes; labels ``(N,)`` and ``(M,)``. Sums are pooled over pairs.
    num_classes : int
    max_rows : int
        Larger nodes are subsampled (evenly spaced rows) to bound the ``N x M`` product.

    Returns
    -------
    ndarray, shape (num_classes, num_classes), float64
        Entry ``(i, j)``: mean similarity of class-``i`` rows of ``x`` to class-``j`` rows
        of ``y``; NaN where a class is absent.
    """
    total = np.zeros((num_classes, num_classes))
    count = np.zeros((num_classes, num_classes))
    for x, xl, y, yl in pairs:
        xa, ya = np.asarray(x, np.float32), np.asarray(y, np.float32)
        xi, yi = _labels("x_labels", xl, num_classes), _labels("y_labels", yl, num_classes)
        if xa.ndim != 2 or ya.ndim != 2 or xa.shape[1] != ya.shape[1]:
            raise ShapeError(f"embeddings must be (N, D) and (M, D); got {xa.shape}, {ya.shape}")
        if len(xa) != len(xi) or len(ya) != len(yi):
            raise ShapeError("each embedding matrix needs one label per row")
        rx = np.linspace(0, len(xa) - 1, min(len(xa), max_rows)).astype(np.int64)
        ry = np.linspace(0, len(ya) - 1, min(len(ya), max_rows)).astype(np.int64)
        sims = xa[rx] @ ya[ry].T
        ox = np.eye(num_classes)[xi[rx]]  # (n, K) one-hot
        oy = np.eye(num_classes)[yi[ry]]
        total += ox.T @ sims @ oy
        count += np.outer(ox.sum(axis=0), oy.sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)
