"""Continuous recordings cut into windows: time alignment across rates, labels per window."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmbind.client.data.recording import Recording
from mmbind.client.data.windowing import cut_windows, window_label
from mmbind.dataset_manifest import DatasetManifest, ModalityEntry, Windowing
from mmbind.errors import DataError
from mmbind.modalities import Modality


def _manifest(acc_window: int = 25, **windowing: Any) -> DatasetManifest:
    values = {"length_s": 0.5, "stride_s": 0.25, **windowing}
    return DatasetManifest(
        "stream",
        ("a", "b", "c"),
        (
            ModalityEntry(Modality("ecg", 1, 100.0, 50, "mV"), ("lead1",)),
            ModalityEntry(Modality("wrist_acc", 3, 50.0, acc_window, "g"), ("x", "y", "z")),
        ),
        Windowing("sliding", **values),
    )


def _ramp(seconds: float, rate: float, channels: int, start: float = 0.0) -> np.ndarray:
    """A signal whose value is the time of each sample (so alignment is visible)."""
    t = start + np.arange(round(seconds * rate)) / rate
    return np.repeat(t[:, None], channels, axis=1)


def test_windows_of_two_rates_cover_the_same_seconds() -> None:
    # Prepare: 2 s of ecg at 100 Hz and of acc at 50 Hz, one label
    recording = Recording(1, 1, {"ecg": _ramp(2, 100, 1), "wrist_acc": _ramp(2, 50, 3)}, label=2)

    # Execute
    windows, labels = cut_windows(recording, _manifest(), ("ecg", "wrist_acc"))

    # Assert: 0.5 s windows every 0.25 s within 2 s: starts 0, 0.25, ..., 1.5
    assert labels.tolist() == [2] * 7
    assert windows["ecg"].shape == (7, 50, 1) and windows["wrist_acc"].shape == (7, 25, 3)
    for k in range(7):
        assert windows["ecg"][k, 0, 0] == pytest.approx(0.25 * k)
        # 50 Hz has no sample at 0.25 s: the nearest one (half a sample period at most)
        assert windows["wrist_acc"][k, 0, 0] == pytest.approx(0.25 * k, abs=0.0101)
        assert windows["ecg"][k, -1, 0] == pytest.approx(0.25 * k + 0.49)
        assert windows["wrist_acc"][k, -1, 0] == pytest.approx(0.25 * k + 0.48, abs=0.0101)


def test_start_offsets_align_modalities_on_time() -> None:
    # Prepare: acc starts 0.5 s after the ecg
    recording = Recording(
        1,
        1,
        {"ecg": _ramp(2, 100, 1), "wrist_acc": _ramp(1.5, 50, 3, start=0.5)},
        label=0,
        starts={"wrist_acc": 0.5},
    )

    # Execute
    windows, labels = cut_windows(recording, _manifest(), ("ecg", "wrist_acc"))

    # Assert: windows start at 0.5 s, the later start; both cover the same seconds
    assert len(labels) == 5
    assert np.allclose(windows["ecg"][:, 0, 0], windows["wrist_acc"][:, 0, 0], atol=0.0101)
    assert windows["ecg"][0, 0, 0] == pytest.approx(0.5)


def test_cuts_of_another_length_are_resampled_to_the_window() -> None:
    recording = Recording(1, 1, {"ecg": _ramp(1, 100, 1), "wrist_acc": _ramp(1, 50, 3)}, label=0)
    windows, _ = cut_windows(recording, _manifest(acc_window=20), ("wrist_acc",))
    assert windows["wrist_acc"].shape == (3, 20, 3) and windows["wrist_acc"].dtype == np.float32


def test_per_sample_labels_by_majority_or_drop() -> None:
    # Prepare: labels at 10 Hz: 0.6 s of class 0, then 1.4 s of class 1
    labels = np.r_[np.zeros(6), np.ones(14)].astype(np.int64)
    recording = Recording(
        1, 1, {"ecg": _ramp(2, 100, 1), "wrist_acc": _ramp(2, 50, 3)}, labels=labels
    )

    # Execute
    _, majority = cut_windows(recording, _manifest(label_rate_hz=10.0, mixed="majority"), ("ecg",))
    _, dropped = cut_windows(recording, _manifest(label_rate_hz=10.0, mixed="drop"), ("ecg",))

    # Assert: windows [0, .5) [.25, .75) [.5, 1) ...: the second holds 0.35 s of class 0 and
    # 0.15 s of class 1, the third 0.1 s of class 0; from 0.75 s on only class 1
    assert majority.tolist() == [0, 0, 1, 1, 1, 1, 1]
    assert dropped.tolist() == [0, 1, 1, 1, 1]


def test_unlabelled_samples_drop_their_windows() -> None:
    labels = np.r_[np.full(10, -1), np.full(10, 2)].astype(np.int64)
    recording = Recording(1, 1, {"ecg": _ramp(2, 100, 1)}, labels=labels)
    _, got = cut_windows(recording, _manifest(label_rate_hz=10.0), ("ecg",))
    # windows from 0 s to 0.5 s are all unlabelled; the one at 0.75 s holds 2 unlabelled
    # label samples and 3 of class 2
    assert got.tolist() == [2, 2, 2, 2]


def test_a_recording_shorter_than_a_window_gives_none() -> None:
    recording = Recording(1, 1, {"ecg": _ramp(0.3, 100, 1)}, label=0)
    windows, labels = cut_windows(recording, _manifest(), ("ecg",))
    assert labels.shape == (0,) and windows["ecg"].shape == (0, 50, 1)


def test_nan_in_a_signal_names_the_modality_and_sample() -> None:
    signal = _ramp(2, 100, 1)
    signal[37:40] = np.nan
    recording = Recording(1, 1, {"ecg": signal}, label=0)
    with pytest.raises(DataError, match="first at sample 37"):
        cut_windows(recording, _manifest(), ("ecg",), "r.npz")


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=30))
def test_majority_label_is_a_most_frequent_value_and_the_smallest_such(values: list[int]) -> None:
    segment = np.array(values, dtype=np.int64)
    label = window_label(segment, "majority")
    counts = np.bincount(segment)
    assert counts[label] == counts.max()
    assert label == int(np.flatnonzero(counts == counts.max())[0])
    assert window_label(segment, "drop") == (values[0] if len(set(values)) == 1 else -1)


@settings(max_examples=30, deadline=None)
@given(
    seconds=st.floats(0.5, 5.0),
    stride=st.sampled_from([0.1, 0.25, 0.5, 1.0]),
)
def test_every_window_fits_inside_the_recording(seconds: float, stride: float) -> None:
    recording = Recording(
        1, 1, {"ecg": _ramp(seconds, 100, 1), "wrist_acc": _ramp(seconds, 50, 3)}, label=1
    )
    windows, labels = cut_windows(recording, _manifest(stride_s=stride), ("ecg", "wrist_acc"))
    n = len(labels)
    assert n == len(windows["ecg"]) == len(windows["wrist_acc"])
    assert n >= 1
    last_end = windows["ecg"][-1, -1, 0]
    assert last_end < seconds
