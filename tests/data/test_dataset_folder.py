"""Data set folders: manifest parsing, recordings, the reader, the atomic writer, exports.

The UTD-MHAD checks read the official files from ../shared/data/utd_mhad (skipped where
absent); converted copies go to tmp folders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from utd_mhad_files import UTD_DIR, needs_utd

from mmbind.client.data.export import builtin_entries, export_synthetic, export_utd_mhad
from mmbind.client.data.folder_reader import load_dataset_folder, subjects_of
from mmbind.client.data.folder_writer import DatasetWriter
from mmbind.client.data.recording import Recording, read_recording, recording_bytes
from mmbind.client.data.synthetic import make_synthetic
from mmbind.client.data.utd_mhad import load_utd_mhad
from mmbind.dataset_manifest import (
    MANIFEST_NAME,
    DatasetManifest,
    ModalityEntry,
    Windowing,
    activate_dataset,
)
from mmbind.errors import ConfigError, DataError
from mmbind.modalities import REGISTRY, Modality, get_modality
from mmbind.run_config import RunConfig


def _ecg_manifest(mode: str = "window", **windowing: Any) -> DatasetManifest:
    return DatasetManifest(
        "lab",
        ("rest", "walk", "run"),
        (
            ModalityEntry(Modality("ecg", 1, 100.0, 50, "mV"), ("lead1",)),
            ModalityEntry(Modality("wrist_acc", 3, 50.0, 25, "g"), ("x", "y", "z")),
        ),
        Windowing(mode, **windowing),  # type: ignore[arg-type]
    )


def _manifest_doc() -> dict[str, Any]:
    return _ecg_manifest().to_dict()


# --- the manifest --------------------------------------------------------------------------


def test_manifest_round_trips_through_toml(tmp_path: Path) -> None:
    # Prepare
    manifest = _ecg_manifest("sliding", length_s=0.5, stride_s=0.25, label_rate_hz=10.0)
    (tmp_path / MANIFEST_NAME).write_text(manifest.to_toml())

    # Execute
    back = DatasetManifest.read(tmp_path)

    # Assert
    assert back == manifest


@pytest.mark.parametrize(
    ("change", "names"),
    [
        (lambda d: d.pop("format"), "format"),
        (lambda d: d.update(classes=[]), "classes"),
        (lambda d: d.update(colour="red"), "colour"),
        (lambda d: d["modalities"]["ecg"].pop("rate_hz"), "modalities.ecg.rate_hz"),
        (lambda d: d["modalities"]["ecg"].update(channels=0), "modalities.ecg.channels"),
        (lambda d: d["modalities"]["ecg"].update(rate_hz=-1.0), "modalities.ecg.rate_hz"),
        (lambda d: d["modalities"]["ecg"].update(channel_names=["a", "b"]), "channel_names"),
        (lambda d: d["modalities"]["wrist_acc"].update(points=2), "modalities.wrist_acc.points"),
        (lambda d: d["modalities"].update({"Bad Name": {}}), "modalities.Bad Name"),
        (lambda d: d["windowing"].update(mode="chunks"), "windowing.mode"),
        (lambda d: d["windowing"].update(mode="sliding"), "windowing.length_s"),
        (lambda d: d["windowing"].update(label_rate_hz=5.0), "windowing.label_rate_hz"),
    ],
)
def test_a_bad_manifest_is_one_line_naming_the_field(change: Any, names: str) -> None:
    # Prepare
    doc = _manifest_doc()
    change(doc)

    # Execute / Assert
    with pytest.raises(DataError) as err:
        DatasetManifest.from_dict(doc, "lab/mmbind-dataset.toml")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("lab/mmbind-dataset.toml: ") and names in message


def test_a_folder_without_manifest_is_no_data_set(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a data set folder"):
        DatasetManifest.read(tmp_path)


def test_a_manifest_that_is_not_toml_names_the_file(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_NAME).write_text("format = \n")
    with pytest.raises(DataError, match="not a readable TOML file"):
        DatasetManifest.read(tmp_path)


# --- the registry --------------------------------------------------------------------------


def test_a_folder_registers_its_modalities_beside_the_builtins(tmp_path: Path) -> None:
    # Prepare
    (tmp_path / MANIFEST_NAME).write_text(_ecg_manifest().to_toml())

    # Execute
    config = RunConfig.from_mapping({"dataset": str(tmp_path), "shared_modality": "wrist_acc"})

    # Assert
    assert config.shared_modality == "wrist_acc"
    assert get_modality("ecg") == Modality("ecg", 1, 100.0, 50, "mV")
    assert list(REGISTRY)[:4] == ["acc", "gyro", "mag", "skeleton"]
    assert get_modality("acc").window == 120  # built-ins untouched


def test_a_folder_may_redefine_a_builtin_name(tmp_path: Path) -> None:
    # Prepare
    manifest = DatasetManifest(
        "fast",
        ("a", "b"),
        (ModalityEntry(Modality("acc", 3, 100.0, 200, "m/s^2"), ("x", "y", "z")),),
    )
    (tmp_path / MANIFEST_NAME).write_text(manifest.to_toml())

    # Execute
    activate_dataset(str(tmp_path))

    # Assert
    assert get_modality("acc").shape == (200, 3)
    assert list(REGISTRY) == ["acc", "gyro", "mag", "skeleton"]


def test_an_unknown_dataset_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="neither a built-in data set"):
        RunConfig.from_mapping({"dataset": "/no/such/folder"})


def test_the_default_config_leaves_the_builtin_registry() -> None:
    before = dict(REGISTRY)
    RunConfig()
    assert before == REGISTRY


# --- recordings ----------------------------------------------------------------------------


def _write_npz(path: Path, **arrays: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"trial": 1, "label": 0, "ecg": np.zeros((50, 1))}, "'subject' is missing"),
        ({"subject": 1.5, "trial": 1, "label": 0, "ecg": np.zeros((50, 1))}, "'subject' has"),
        ({"subject": 1, "trial": 1, "ecg": np.zeros((50, 1))}, "no 'label'"),
        ({"subject": 1, "trial": 1, "label": 3, "ecg": np.zeros((50, 1))}, "out of range"),
        ({"subject": 1, "trial": 1, "label": 0, "emg": np.zeros((50, 1))}, "not a modality"),
        ({"subject": 1, "trial": 1, "label": 0, "ecg": np.zeros((50, 2))}, "expected (samples, 1)"),
        ({"subject": 1, "trial": 1, "label": 0, "ecg": np.zeros((49, 1))}, "49 samples"),
        ({"subject": 1, "trial": 1, "label": 0, "ecg": np.zeros((50, 1), int)}, "store floats"),
        ({"subject": 1, "trial": 1, "label": 0}, "holds no signal"),
    ],
)
def test_a_bad_recording_is_one_line_naming_the_file(
    tmp_path: Path, arrays: dict[str, Any], message: str
) -> None:
    # Prepare
    path = _write_npz(tmp_path / "r.npz", **arrays)

    # Execute / Assert
    with pytest.raises(DataError) as err:
        read_recording(path, _ecg_manifest())
    assert str(err.value).startswith(str(path)) and message in str(err.value)
    assert "\n" not in str(err.value)


def test_a_file_that_is_not_npz_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "r.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"not a readable \.npz file"):
        read_recording(path, _ecg_manifest())


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    subject=st.integers(0, 10_000),
    trial=st.integers(-5, 10_000),
    label=st.integers(0, 2),
    seed=st.integers(0, 2**32 - 1),
    start=st.floats(-10, 10, allow_nan=False),
)
def test_recordings_round_trip_through_npz(
    tmp_path: Path, subject: int, trial: int, label: int, seed: int, start: float
) -> None:
    # Prepare
    rng = np.random.default_rng(seed)
    recording = Recording(
        subject,
        trial,
        {"ecg": rng.normal(size=(50, 1)), "wrist_acc": rng.normal(size=(25, 3)).astype(np.float32)},
        label=label,
        starts={"ecg": start},
    )
    path = tmp_path / "r.npz"

    # Execute
    path.write_bytes(recording_bytes(recording))
    back = read_recording(path, _ecg_manifest())

    # Assert
    assert (back.subject, back.trial, back.label, back.starts) == (
        subject,
        trial,
        label,
        {"ecg": start},
    )
    for name, signal in recording.signals.items():
        assert back.signals[name].dtype == signal.dtype
        assert np.array_equal(back.signals[name], signal)


# --- the writer and the reader -------------------------------------------------------------


def _recording(subject: int, trial: int, label: int, seed: int = 0) -> Recording:
    rng = np.random.default_rng((subject, trial, label, seed))
    return Recording(
        subject,
        trial,
        {"ecg": rng.normal(size=(50, 1)), "wrist_acc": rng.normal(size=(25, 3))},
        label=label,
    )


def test_writer_then_reader_give_the_recordings_in_subject_then_name_order(tmp_path: Path) -> None:
    # Prepare
    target = tmp_path / "lab"
    with DatasetWriter(target, _ecg_manifest()) as writer:
        writer.add(_recording(2, 1, 0), "b")
        writer.add(_recording(1, 2, 1), "z")
        writer.add(_recording(1, 1, 2), "a")

    # Execute
    ds = load_dataset_folder(target)

    # Assert
    assert ds.subjects.tolist() == [1, 1, 2]
    assert ds.trials.tolist() == [1, 2, 1] and ds.labels.tolist() == [2, 1, 0]
    assert ds.windows["ecg"].shape == (3, 50, 1) and ds.windows["wrist_acc"].shape == (3, 25, 3)
    assert np.array_equal(
        ds.windows["ecg"][0], _recording(1, 1, 2).signals["ecg"].astype(np.float32)
    )
    assert ds.class_names == ("rest", "walk", "run")


def test_reading_some_subjects_opens_only_their_files(tmp_path: Path) -> None:
    # Prepare: subject 2's only file is corrupt, so reading it would fail
    target = tmp_path / "lab"
    with DatasetWriter(target, _ecg_manifest()) as writer:
        writer.add(_recording(1, 1, 0), "a")
        bad = writer.add(_recording(2, 1, 0), "a")
    bad.write_bytes(b"corrupt")

    # Execute
    ds = load_dataset_folder(target, subjects=[1], modalities=["wrist_acc"])

    # Assert
    assert ds.subject_ids == (1,) and ds.modalities == ("wrist_acc",)
    with pytest.raises(DataError, match=r"not a readable \.npz"):
        load_dataset_folder(target)


def test_a_failed_write_leaves_nothing_that_looks_like_a_data_set(tmp_path: Path) -> None:
    # Prepare
    target = tmp_path / "lab"

    # Execute: the third recording is invalid
    with (
        pytest.raises(DataError, match="out of range"),
        DatasetWriter(target, _ecg_manifest()) as writer,
    ):
        writer.add(_recording(1, 1, 0), "a")
        writer.add(_recording(1, 2, 1), "b")
        writer.add(Recording(1, 3, {"ecg": np.zeros((50, 1))}, label=7), "c")

    # Assert
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_write_leaves_only_a_hidden_folder_without_manifest(tmp_path: Path) -> None:
    # Prepare / Execute: a writer never committed (the process died mid-way)
    writer = DatasetWriter(tmp_path / "lab", _ecg_manifest()).__enter__()
    writer.add(_recording(1, 1, 0), "a")

    # Assert
    assert not (tmp_path / "lab").exists()
    (partial,) = tmp_path.iterdir()
    assert partial.name.startswith(".") and not (partial / MANIFEST_NAME).exists()


def test_the_writer_refuses_a_folder_that_is_not_empty_and_keeps_it(tmp_path: Path) -> None:
    # Prepare
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "mine.txt").write_text("keep")

    # Execute / Assert
    with pytest.raises(ConfigError, match="not empty"):
        DatasetWriter(tmp_path / "lab", _ecg_manifest())
    assert (tmp_path / "lab" / "mine.txt").read_text() == "keep"


def test_duplicate_recordings_are_refused(tmp_path: Path) -> None:
    with (
        pytest.raises(DataError, match="duplicate"),
        DatasetWriter(tmp_path / "lab", _ecg_manifest()) as writer,
    ):
        writer.add(_recording(1, 1, 0), "a")
        writer.add(_recording(1, 1, 0, seed=1), "b")
    assert not (tmp_path / "lab").exists()


def test_the_reader_refuses_a_recording_in_another_subjects_folder(tmp_path: Path) -> None:
    # Prepare
    target = tmp_path / "lab"
    with DatasetWriter(target, _ecg_manifest()) as writer:
        writer.add(_recording(1, 1, 0), "a")
    moved = target / "recordings" / "subject-2"
    moved.mkdir()
    (target / "recordings" / "subject-1" / "a.npz").rename(moved / "a.npz")

    # Execute / Assert
    with pytest.raises(DataError, match="move it to subject-1"):
        load_dataset_folder(target, subjects=[2])


def test_asking_for_a_subject_without_folder_lists_the_subjects(tmp_path: Path) -> None:
    target = tmp_path / "lab"
    with DatasetWriter(target, _ecg_manifest()) as writer:
        writer.add(_recording(1, 1, 0), "a")
    assert subjects_of(target) == (1,)
    with pytest.raises(DataError, match=r"subjects of this data set: \[1\]"):
        load_dataset_folder(target, subjects=[3])


# --- exports of the built-in data sets -----------------------------------------------------


def test_synthetic_exported_and_read_back_is_identical(tmp_path: Path) -> None:
    # Prepare
    expected = make_synthetic(num_classes=4, subjects=(1, 2, 3), trials=2, seed=5)

    # Execute
    export_synthetic(tmp_path / "syn", num_classes=4, subjects=(1, 2, 3), trials=2, seed=5)
    got = load_dataset_folder(tmp_path / "syn")

    # Assert
    assert got.modalities == expected.modalities
    for name in expected.modalities:
        assert got.windows[name].dtype == np.float32
        assert np.array_equal(got.windows[name], expected.windows[name])
    for key in ("labels", "subjects", "trials"):
        assert np.array_equal(getattr(got, key), getattr(expected, key))
    assert got.class_names == expected.class_names and got.num_classes == expected.num_classes


def test_builtin_entries_are_the_registry_definitions() -> None:
    for entry in builtin_entries(("acc", "gyro", "skeleton")):
        assert entry.modality == get_modality(entry.name)
        assert len(entry.channel_names) == entry.modality.channels


@pytest.mark.data
@needs_utd
def test_utd_mhad_exported_reads_back_bit_for_bit_as_the_builtin_loader(tmp_path: Path) -> None:
    # Prepare
    expected = load_utd_mhad(UTD_DIR)

    # Execute
    export_utd_mhad(UTD_DIR, tmp_path / "utd")
    got = load_dataset_folder(tmp_path / "utd")

    # Assert: every window of all 861 samples, exactly
    assert len(got) == len(expected) == 861
    assert got.modalities == expected.modalities
    for name in expected.modalities:
        assert got.windows[name].dtype == expected.windows[name].dtype
        assert np.array_equal(got.windows[name], expected.windows[name]), name
    for key in ("labels", "subjects", "trials"):
        assert np.array_equal(getattr(got, key), getattr(expected, key)), key
    assert got.class_names == expected.class_names
    some = load_dataset_folder(tmp_path / "utd", subjects=[5, 6], modalities=["skeleton", "gyro"])
    assert len(some) == 215
    theirs = load_utd_mhad(UTD_DIR, subjects=[5, 6], modalities=("skeleton", "gyro"))
    assert np.array_equal(some.windows["skeleton"], theirs.windows["skeleton"])


_names_st = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)


@st.composite
def _manifests(draw: st.DrawFn) -> DatasetManifest:
    names = draw(st.lists(_names_st, min_size=1, max_size=4, unique=True))
    entries = []
    for name in names:
        points = draw(st.integers(1, 4))
        channels = points * draw(st.integers(1, 4))
        entries.append(
            ModalityEntry(
                Modality(
                    name,
                    channels,
                    draw(st.floats(0.5, 2000, allow_nan=False)),
                    draw(st.integers(1, 500)),
                    draw(st.text(max_size=5)),
                    points=points,
                ),
                tuple(f"ch{i}" for i in range(channels)),
                draw(st.none() | st.floats(0.1, 60)),
            )
        )
    mode = draw(st.sampled_from(["window", "whole", "sliding"]))
    sliding = mode == "sliding"
    windowing = Windowing(
        mode,  # type: ignore[arg-type]
        draw(st.floats(0.1, 60)) if sliding else None,
        draw(st.floats(0.1, 60)) if sliding else None,
        draw(st.sampled_from(["majority", "drop"])) if sliding else "majority",
        draw(st.none() | st.floats(1, 500)) if sliding else None,
    )
    classes = tuple(
        draw(st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=5, unique=True))
    )
    return DatasetManifest(
        draw(st.text(min_size=1, max_size=10).filter(str.strip)), classes, tuple(entries), windowing
    )


@settings(max_examples=40, deadline=None)
@given(_manifests())
def test_any_manifest_round_trips_through_toml(manifest: DatasetManifest) -> None:
    import tomllib

    assert DatasetManifest.from_dict(tomllib.loads(manifest.to_toml())) == manifest
