"""Per-channel moments and the normalisation the coordinator merges from them.

Each training node computes :class:`ChannelMoments` of its windows (count, sum and sum
of squares per channel, float64) and sends them; the coordinator merges the moments of
training nodes only (never the held-out test node) with :func:`merge_normalization` and
broadcasts the resulting mean and standard deviation, which every node applies. Raw
samples never leave the node; only ``2 C + 1`` numbers per modality do. Both sides use
this module, so it lives in ``mmbind`` (the coordinator imports no node code).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mmbind.errors import ConfigError, DataError, ShapeError

__all__ = ["STD_EPSILON", "ChannelMoments", "merge_normalization"]

#: Floor of :meth:`ChannelMoments.std`, so constant channels do not divide by zero.
STD_EPSILON = 1e-6


@dataclass
class ChannelMoments:
    """Sufficient statistics of per-channel mean and variance.

    Attributes
    ----------
    count : int
        Number of values per channel (samples x time steps).
    total : ndarray
        ``(C,)`` float64 sum of the values of each channel.
    total_sq : ndarray
        ``(C,)`` float64 sum of the squared values of each channel.
    """

    count: int
    total: NDArray[np.float64]
    total_sq: NDArray[np.float64]

    def __post_init__(self) -> None:
        self.total = np.asarray(self.total, dtype=np.float64)
        self.total_sq = np.asarray(self.total_sq, dtype=np.float64)
        if self.total.ndim != 1 or self.total.shape != self.total_sq.shape:
            raise ShapeError(
                f"total and total_sq must both have shape (C,), got {self.total.shape} "
                f"and {self.total_sq.shape}"
            )
        if isinstance(self.count, bool) or not isinstance(self.count, int | np.integer):
            raise ConfigError(f"count must be an int, got {self.count!r}")
        self.count = int(self.count)
        if self.count < 0:
            raise ConfigError(f"count must be >= 0, got {self.count}")
        if not (np.isfinite(self.total).all() and np.isfinite(self.total_sq).all()):
            raise DataError("channel moments hold NaN/inf; all sums must be finite")

    @property
    def channels(self) -> int:
        """Number of channels ``C``."""
        return int(self.total.shape[0])

    @classmethod
    def zeros(cls, channels: int) -> ChannelMoments:
        """Moments of no data for ``channels`` channels (the identity of :meth:`merge`)."""
        return cls(0, np.zeros(channels), np.zeros(channels))

    @classmethod
    def from_windows(cls, windows: ArrayLike) -> ChannelMoments:
        """Moments of ``windows`` of shape ``(N, T, C)`` (any ``(..., C)`` works).

        Raises
        ------
        ShapeError
            ``windows`` has fewer than 2 dimensions.
        DataError
            ``windows`` holds NaN/inf.
        """
        w = np.asarray(windows, dtype=np.float64)
        if w.ndim < 2:
            raise ShapeError(f"windows must have shape (N, T, C), got {w.shape}")
        flat = w.reshape(-1, w.shape[-1])
        if not np.isfinite(flat).all():
            raise DataError("windows hold NaN/inf values; moments need finite data")
        return cls(int(flat.shape[0]), flat.sum(axis=0), np.square(flat).sum(axis=0))

    def merge(self, other: ChannelMoments) -> ChannelMoments:
        """Moments of the union of both data sets.

        Raises
        ------
        ShapeError
            The channel counts differ.
        """
        if other.channels != self.channels:
            raise ShapeError(
                f"cannot merge moments of {self.channels} and {other.channels} channels"
            )
        return ChannelMoments(
            self.count + other.count, self.total + other.total, self.total_sq + other.total_sq
        )

    __add__ = merge

    @classmethod
    def sum(cls, moments: Iterable[ChannelMoments]) -> ChannelMoments:
        """Merge a non-empty collection of moments.

        Raises
        ------
        ConfigError
            ``moments`` is empty.
        ShapeError
            Channel counts differ.
        """
        items = list(moments)
        if not items:
            raise ConfigError("ChannelMoments.sum needs at least one ChannelMoments")
        out = items[0]
        for m in items[1:]:
            out = out.merge(m)
        return out

    def _require_data(self) -> None:
        if self.count == 0:
            raise DataError("channel moments hold no data (count == 0); cannot compute mean/std")

    @property
    def mean(self) -> NDArray[np.float64]:
        """``(C,)`` per-channel mean."""
        self._require_data()
        return self.total / self.count

    @property
    def std(self) -> NDArray[np.float64]:
        """``(C,)`` per-channel population standard deviation, floored at ``STD_EPSILON``."""
        mean = self.mean
        var = np.maximum(self.total_sq / self.count - np.square(mean), 0.0)
        return np.maximum(np.sqrt(var), STD_EPSILON)

    def pooled(self, groups: Sequence[Sequence[int]]) -> ChannelMoments:
        """Moments with the channels of each group pooled, so that :attr:`mean` and
        :attr:`std` of every channel are those of its group's values together.

        Raises
        ------
        ShapeError
            The groups do not cover every channel exactly once.
        """
        covered = sorted(c for g in groups for c in g)
        if covered != list(range(self.channels)):
            raise ShapeError(
                f"normalisation groups must cover channels 0..{self.channels - 1} exactly once"
            )
        total = np.empty_like(self.total)
        total_sq = np.empty_like(self.total_sq)
        scale = np.empty(self.channels, np.int64)
        for g in groups:
            idx = np.asarray(g, dtype=np.int64)
            total[idx] = self.total[idx].sum()
            total_sq[idx] = self.total_sq[idx].sum()
            scale[idx] = len(g)
        # Per channel, the group's sums over its size: the group's mean and variance with the
        # count of one channel (identity for one-channel groups, bit for bit).
        return ChannelMoments(self.count, total / scale, total_sq / scale)

    def to_dict(self) -> dict[str, Any]:
        """Plain ``{"count": int, "total": [float], "total_sq": [float]}`` for transport."""
        return {
            "count": self.count,
            "total": [float(x) for x in self.total],
            "total_sq": [float(x) for x in self.total_sq],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChannelMoments:
        """Inverse of :meth:`to_dict`.

        Raises
        ------
        ConfigError
            A key is missing or a value is not numeric.
        """
        missing = [k for k in ("count", "total", "total_sq") if k not in data]
        if missing:
            raise ConfigError(
                f"channel moments lack {', '.join(missing)}; expected keys count, total, total_sq"
            )
        try:
            count = data["count"]
            if isinstance(count, float) and count.is_integer() and math.isfinite(count):
                count = int(count)
            total = np.asarray(data["total"], dtype=np.float64)
            total_sq = np.asarray(data["total_sq"], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"channel moments hold a non-numeric value: {exc}") from exc
        return cls(count, total, total_sq)


def merge_normalization(
    moments: Mapping[str, Sequence[ChannelMoments]], scheme: str = "channel"
) -> dict[str, tuple[NDArray[np.float32], NDArray[np.float32]]]:
    """Per modality, the mean and std ``(C,)`` of the training nodes' pooled moments.

    The coordinator merges the moments every training node sent in phase 1, then pools the
    channels that share statistics under ``scheme``
    (:func:`mmbind.modalities.normalization_groups`); the result is per channel, so nodes
    apply it with :func:`normalize` whatever the scheme.

    Parameters
    ----------
    moments : mapping of modality name to sequence of ChannelMoments
        One entry per training node holding the modality.
    scheme : {"channel", "axis", "modality"}

    Raises
    ------
    ConfigError
        Unknown scheme or an empty moment list.
    UnknownModalityError
        A modality that is not registered.
    """
    from mmbind.modalities import get_modality, normalization_groups

    out: dict[str, tuple[NDArray[np.float32], NDArray[np.float32]]] = {}
    for name, parts in moments.items():
        merged = ChannelMoments.sum(parts).pooled(normalization_groups(get_modality(name), scheme))
        out[name] = (merged.mean.astype(np.float32), merged.std.astype(np.float32))
    return out
