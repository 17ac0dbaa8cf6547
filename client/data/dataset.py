"""The in-memory multimodal dataset every loader returns.

A :class:`MultimodalDataset` holds ``N`` samples, each with one window per
modality (shapes from :mod:`mmbind.modalities`), a 0-based class id, a subject id
and a trial id. It is validated on construction, so code downstream can rely on
consistent lengths, registry shapes and finite values.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mmbind.errors import ConfigError, DataError
from mmbind.modalities import get_modality, parse_modalities

__all__ = ["MultimodalDataset", "sum_is_finite"]

logger = logging.getLogger(__name__)


def _as_int64(name: str, values: ArrayLike) -> NDArray[np.int64]:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise DataError(f"{name} must be a 1-D array of shape (N,), got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"{name} must hold integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def sum_is_finite(values: NDArray[np.floating]) -> bool:
    """Whether ``values`` sum to a finite number: then none is NaN or infinite.

    One pass without a temporary array, the cheap first check of finiteness; a ``False`` (a
    NaN, an infinity, or finite values summing past the float range) asks for the exact,
    element-wise check.
    """
    with np.errstate(all="ignore"):
        return bool(np.isfinite(np.sum(values)))


@dataclass
class MultimodalDataset:
    """Windows of several modalities with labels, subjects and trials.

    Attributes
    ----------
    windows : dict[str, ndarray]
        Modality name -> float32 array of shape ``(N, T, C)``, where
        ``(T, C) == get_modality(name).shape``.
    labels : ndarray
        ``(N,)`` int64, 0-based class ids in ``[0, num_classes)``.
    subjects : ndarray
        ``(N,)`` int64 subject ids.
    trials : ndarray
        ``(N,)`` int64 trial (repetition) ids.
    num_classes : int
        Number of classes of the task (not only those present).
    class_names : tuple[str, ...]
        One name per class, ``len(class_names) == num_classes``.

    Raises
    ------
    UnknownModalityError
        A key of ``windows`` is not a registered modality.
    DataError
        Lengths disagree, a window has the wrong shape, a value is NaN/inf
        (the message names the modality and the first bad sample index), a
        label is out of range or ``class_names`` does not match ``num_classes``.
    """

    windows: dict[str, NDArray[np.float32]]
    labels: NDArray[np.int64]
    subjects: NDArray[np.int64]
    trials: NDArray[np.int64]
    num_classes: int
    class_names: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.windows:
            raise DataError("a dataset needs at least one modality; windows is empty")
        self.labels = _as_int64("labels", self.labels)
        self.subjects = _as_int64("subjects", self.subjects)
        self.trials = _as_int64("trials", self.trials)
        n = len(self.labels)
        for name, arr in (("subjects", self.subjects), ("trials", self.trials)):
            if len(arr) != n:
                raise DataError(f"{name} has {len(arr)} entries but labels has {n}")

        checked: dict[str, NDArray[np.float32]] = {}
        for name, raw in self.windows.items():
            modality = get_modality(name)
            w = np.asarray(raw, dtype=np.float32)
            expected = (n, *modality.shape)
            if w.shape != expected:
                raise DataError(
                    f"windows[{name!r}] has shape {w.shape}; expected {expected} "
                    f"(N samples x {modality.window} steps x {modality.channels} channels)"
                )
            if n > 0 and not sum_is_finite(w):
                finite = np.isfinite(w).reshape(n, -1).all(axis=1)
                if not finite.all():
                    bad = np.flatnonzero(~finite)
                    raise DataError(
                        f"windows[{name!r}] holds NaN/inf values at sample index {int(bad[0])} "
                        f"({len(bad)} bad samples in total); all values must be finite"
                    )
            checked[name] = w
        self.windows = checked

        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int | np.integer):
            raise DataError(f"num_classes must be an int, got {self.num_classes!r}")
        self.num_classes = int(self.num_classes)
        if self.num_classes < 1:
            raise DataError(f"num_classes must be >= 1, got {self.num_classes}")
        self.class_names = tuple(str(c) for c in self.class_names) or tuple(
            f"class_{i}" for i in range(self.num_classes)
        )
        if len(self.class_names) != self.num_classes:
            raise DataError(
                f"class_names has {len(self.class_names)} names but num_classes is "
                f"{self.num_classes}; give one name per class"
            )
        if n:
            lo, hi = int(self.labels.min()), int(self.labels.max())
            if lo < 0 or hi >= self.num_classes:
                out_of_range = (self.labels < 0) | (self.labels >= self.num_classes)
                bad_label = int(self.labels[out_of_range][0])
                raise DataError(
                    f"label {bad_label} is out of range; labels must be 0-based class ids "
                    f"in [0, {self.num_classes - 1}]"
                )

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}={v.shape[1:]}" for k, v in self.windows.items())
        return (
            f"MultimodalDataset(n={len(self)}, modalities=[{shapes}], "
            f"num_classes={self.num_classes}, subjects={self.subject_ids})"
        )

    @property
    def modalities(self) -> tuple[str, ...]:
        """Names of the modalities held, in insertion order."""
        return tuple(self.windows)

    @property
    def subject_ids(self) -> tuple[int, ...]:
        """Sorted distinct subject ids present."""
        return tuple(int(s) for s in np.unique(self.subjects))

    def select(self, mask_or_indices: ArrayLike) -> MultimodalDataset:
        """Return the samples picked by a boolean mask ``(N,)`` or integer indices ``(M,)``.

        The result holds copies, never views, of this dataset's arrays.

        Raises
        ------
        ConfigError
            A mask of the wrong length, indices out of range or a non-integer index array.
        """
        sel = np.asarray(mask_or_indices)
        n = len(self)
        if sel.dtype == np.bool_:
            if sel.shape != (n,):
                raise ConfigError(f"boolean mask has shape {sel.shape}; expected ({n},)")
            idx = np.flatnonzero(sel)
        else:
            if sel.ndim != 1 or (sel.size and not np.issubdtype(sel.dtype, np.integer)):
                raise ConfigError(
                    f"select takes a boolean mask of shape ({n},) or 1-D integer indices, "
                    f"got dtype {sel.dtype} shape {sel.shape}"
                )
            idx = sel.astype(np.int64, copy=False)
            if idx.size and (idx.min() < -n or idx.max() >= n):
                raise ConfigError(
                    f"sample indices must lie in [-{n}, {n}), got {idx.min()}..{idx.max()}"
                )
        return MultimodalDataset(
            windows={k: v[idx] for k, v in self.windows.items()},
            labels=self.labels[idx],
            subjects=self.subjects[idx],
            trials=self.trials[idx],
            num_classes=self.num_classes,
            class_names=self.class_names,
        )

    def with_modalities(self, names: str | Sequence[str]) -> MultimodalDataset:
        """Keep only the named modalities (in the order given); arrays are shared, not copied.

        Raises
        ------
        UnknownModalityError
            A name is not in the registry.
        DataError
            A registered modality is not held by this dataset.
        """
        wanted = parse_modalities(names)
        missing = [m for m in wanted if m not in self.windows]
        if missing:
            raise DataError(
                f"modalities {', '.join(missing)} are not in this dataset; "
                f"it holds: {', '.join(self.modalities)}"
            )
        return MultimodalDataset(
            windows={m: self.windows[m] for m in wanted},
            labels=self.labels,
            subjects=self.subjects,
            trials=self.trials,
            num_classes=self.num_classes,
            class_names=self.class_names,
        )

    def for_subjects(self, subjects: Iterable[int]) -> MultimodalDataset:
        """Keep the samples of the given subjects.

        Raises
        ------
        ConfigError
            No subject given.
        DataError
            A requested subject has no sample in this dataset.
        """
        wanted = sorted({int(s) for s in subjects})
        if not wanted:
            raise ConfigError("for_subjects needs at least one subject id")
        present = set(self.subject_ids)
        absent = [s for s in wanted if s not in present]
        if absent:
            raise DataError(
                f"subjects {absent} have no samples in this dataset; "
                f"present subjects: {sorted(present)}"
            )
        return self.select(np.isin(self.subjects, wanted))
