"""Cut a recording into fixed-size windows, as the data set's manifest says.

Three modes (:class:`~mmbind.dataset_manifest.Windowing`):

* ``"window"``: the recording is one window; each modality's signal is taken as is (it has
  exactly its ``window`` samples).
* ``"whole"``: the recording is one window; each modality's whole signal is resampled with
  :func:`scipy.signal.resample` (FFT, as the MMBind paper's code) to its ``window`` samples.
  On UTD-MHAD this is bit for bit the built-in loader's preprocessing.
* ``"sliding"``: a continuous recording. Every modality lies on one time axis: sample ``i`` of
  modality ``m`` is at ``start_s.m + i / rate_hz(m)`` seconds. Window ``k`` starts at
  ``t_k = t_0 + k * stride_s``, with ``t_0`` the latest first-sample time of the modalities
  read (and of the labels, which start at 0 s); modality ``m``'s cut is its
  ``[length_s(m) * rate_hz(m)]`` samples from sample ``[(t_k - start_s.m) * rate_hz(m)]``
  (``[x]``: the nearest integer, halves up; a start between two samples takes the nearest),
  resampled to its ``window`` samples when the cut has another length. Windows run while
  every modality's cut (and the labels' span) fits in the recording.
  Labels: one per recording (every window gets it), or per sample (``labels`` at
  ``label_rate_hz``): the window's label samples are those in ``[t_k, t_k + L)``, ``L`` the
  longest modality window; ``mixed = "majority"`` takes the most frequent value (ties to the
  smaller, ``-1`` = unlabelled counting as a value), ``"drop"`` drops a window holding more
  than one value; a window whose label is ``-1`` is dropped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from mmbind.dataset_manifest import DatasetManifest
from mmbind.errors import DataError

from .dataset import sum_is_finite
from .recording import Recording

__all__ = ["cut_windows", "window_label"]


def _index(seconds: float, rate: float) -> int:
    """The sample nearest to ``seconds`` at ``rate`` (halves round up; float noise ignored)."""
    return math.floor(seconds * rate + 0.5 + 1e-9)


def _resample(signal: NDArray[np.floating], window: int, axis: int = 0) -> NDArray[np.float32]:
    import scipy.signal  # lazily: importing it costs ~1 s per ClientApp process

    x = np.asarray(signal, dtype=np.float64)
    return np.asarray(scipy.signal.resample(x, window, axis=axis)).astype(np.float32)


def _finite(source: str, name: str, signal: NDArray[np.floating]) -> None:
    if sum_is_finite(signal):
        return
    bad = ~np.isfinite(signal).all(axis=1)  # a NaN/inf, or finite values summing past max
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{source}: {name} holds NaN/inf in {int(bad.sum())} samples (first at sample "
            f"{first}); fill or cut those samples before reading (mmbind data check lists them)"
        )


def window_label(segment: NDArray[np.int64], mixed: str) -> int:
    """The label of a window from its label samples ``(L,)``; ``-1``: drop the window.

    ``mixed = "majority"``: the most frequent value, ties to the smaller; ``"drop"``: ``-1``
    unless every sample carries the same value.
    """
    if segment.size == 0:
        return -1
    values, counts = np.unique(segment, return_counts=True)
    if mixed == "drop" and len(values) > 1:
        return -1
    return int(values[int(np.argmax(counts))])  # np.unique sorts: ties go to the smaller


def cut_windows(
    recording: Recording,
    manifest: DatasetManifest,
    modalities: Sequence[str],
    source: str = "recording",
) -> tuple[dict[str, NDArray[np.float32]], NDArray[np.int64]]:
    """The windows of ``recording`` for ``modalities`` (it must hold every one of them).

    Parameters
    ----------
    recording : Recording
        A validated recording (:meth:`Recording.check`).
    manifest : DatasetManifest
        Its data set's manifest (modality shapes, rates, windowing).
    modalities : sequence of str
        The modalities to cut.
    source : str
        The recording's file, for messages.

    Returns
    -------
    windows : dict[str, ndarray]
        Modality -> ``(K, window, channels)`` float32.
    labels : ndarray
        ``(K,)`` int64 class ids.

    Raises
    ------
    DataError
        A signal holds NaN/inf (the message names the modality and the first sample).
    """
    for name in modalities:
        _finite(source, name, recording.signals[name])
    mode = manifest.windowing.mode
    if mode in ("window", "whole"):
        label = np.array([recording.label], dtype=np.int64)
        out: dict[str, NDArray[np.float32]] = {}
        for name in modalities:
            signal = recording.signals[name]
            if mode == "window":
                out[name] = np.asarray(signal, dtype=np.float32)[None]
            else:
                out[name] = _resample(signal, manifest.entry(name).modality.window)[None]
        return out, label
    return _sliding(recording, manifest, modalities)


def _sliding(
    recording: Recording, manifest: DatasetManifest, modalities: Sequence[str]
) -> tuple[dict[str, NDArray[np.float32]], NDArray[np.int64]]:
    w = manifest.windowing
    stride = float(w.stride_s or 0.0)
    lengths = {m: manifest.window_seconds(m) for m in modalities}
    rates = {m: manifest.entry(m).modality.rate_hz for m in modalities}
    starts = {m: recording.starts.get(m, 0.0) for m in modalities}
    ends = {m: starts[m] + len(recording.signals[m]) / rates[m] for m in modalities}
    t0 = max(starts.values())
    longest = max(lengths.values())
    label_rate = w.label_rate_hz
    if label_rate is not None and recording.labels is not None:
        t0 = max(t0, 0.0)
    cuts: dict[str, list[NDArray[np.float32]]] = {m: [] for m in modalities}
    labels: list[int] = []
    k = 0
    while True:
        tk = t0 + k * stride
        k += 1
        spans = {}
        fits = True
        for m in modalities:
            i0 = _index(tk - starts[m], rates[m])
            n = _index(lengths[m], rates[m])
            if i0 < 0 or n < 1 or i0 + n > len(recording.signals[m]):
                fits = False
                break
            spans[m] = (i0, n)
        if label_rate is not None and recording.labels is not None:
            j0, j1 = _index(tk, label_rate), _index(tk + longest, label_rate)
            if j1 > len(recording.labels):
                fits = False
        if not fits:
            if any(tk + lengths[m] > ends[m] + 1e-9 for m in modalities) or stride <= 0:
                break
            continue  # a rounding edge: try the next start
        if label_rate is not None and recording.labels is not None:
            label = window_label(recording.labels[j0:j1], w.mixed)
        else:
            label = int(recording.label if recording.label is not None else -1)
        if label < 0:
            continue
        labels.append(label)
        for m in modalities:
            i0, n = spans[m]
            cuts[m].append(recording.signals[m][i0 : i0 + n])
    windows: dict[str, NDArray[np.float32]] = {}
    for m in modalities:
        shape = manifest.entry(m).modality.shape
        if not cuts[m]:
            windows[m] = np.zeros((0, *shape), dtype=np.float32)
            continue
        if len(cuts[m][0]) == shape[0]:  # the cut is the window: no resampling, one copy
            windows[m] = np.stack(cuts[m], dtype=np.float32)
        else:  # one FFT call for all cuts: the same numbers as one call per cut
            windows[m] = _resample(np.stack(cuts[m]), shape[0], axis=1)
    return windows, np.array(labels, dtype=np.int64)
