"""Per-channel normalisation of a node's windows.

The statistics come from :mod:`mmbind.moments` (:class:`ChannelMoments`, merged by the
coordinator with :func:`merge_normalization`; both re-exported here); this module holds
what only a node does with them: :func:`dataset_moments` and :func:`normalize`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mmbind.errors import ConfigError, ShapeError
from mmbind.moments import STD_EPSILON, ChannelMoments, merge_normalization

from .dataset import MultimodalDataset

__all__ = [
    "STD_EPSILON",
    "ChannelMoments",
    "dataset_moments",
    "merge_normalization",
    "normalize",
]


def dataset_moments(dataset: MultimodalDataset) -> dict[str, ChannelMoments]:
    """:class:`ChannelMoments` of every modality of ``dataset``."""
    return {name: ChannelMoments.from_windows(w) for name, w in dataset.windows.items()}


def normalize(windows: ArrayLike, mean: ArrayLike, std: ArrayLike) -> NDArray[np.float32]:
    """Standardise ``windows`` ``(..., C)`` per channel: ``(windows - mean) / std``.

    Parameters
    ----------
    windows : array_like
        ``(N, T, C)`` (or any ``(..., C)``) values.
    mean, std : array_like
        ``(C,)`` statistics, e.g. :attr:`ChannelMoments.mean` and :attr:`ChannelMoments.std`.

    Returns
    -------
    ndarray
        float32 array of the shape of ``windows`` (a new array).

    Raises
    ------
    ShapeError
        ``mean`` or ``std`` is not ``(C,)`` with ``C`` the last axis of ``windows``.
    ConfigError
        ``std`` has a non-positive or non-finite entry.
    """
    w = np.asarray(windows, dtype=np.float64)
    mu = np.asarray(mean, dtype=np.float64)
    sd = np.asarray(std, dtype=np.float64)
    if w.ndim < 1:
        raise ShapeError(f"windows must have a channel axis, got shape {w.shape}")
    channels = w.shape[-1]
    for name, arr in (("mean", mu), ("std", sd)):
        if arr.shape != (channels,):
            raise ShapeError(f"{name} has shape {arr.shape}; expected ({channels},)")
    if not (np.isfinite(sd).all() and (sd > 0).all()):
        raise ConfigError(f"std must be finite and > 0 in every channel, got {sd.tolist()}")
    return ((w - mu) / sd).astype(np.float32)
