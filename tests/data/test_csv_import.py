"""CSV imports: a long table and a folder of per-recording files, good and malformed.

Every malformed input is one clear line naming the file (and line or field), and leaves no
folder at the target (nothing half-imported looks like a data set).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from table_mappings import WHOLE, table_mapping

from mmbind.client.data.csv_import import ImportMapping, import_files, import_table
from mmbind.client.data.folder_check import check_dataset_folder
from mmbind.client.data.folder_reader import load_dataset_folder
from mmbind.errors import ConfigError, DataError

TABLE_MAPPING = table_mapping()


def _rows(subject: int, session: int, labels: list[str], seed: int) -> list[str]:
    rng = np.random.default_rng((subject, session, seed))
    out = []
    for label in labels:
        ax, ay, az, ecg = rng.normal(size=4)
        out.append(f"{subject},{session},{label},{ax:.6f},{ay:.6f},{az:.6f},{ecg:.6f}")
    return out


def _table(tmp_path: Path, rows: list[str], header: str | None = None) -> Path:
    path = tmp_path / "table.csv"
    head = header or "subject,session,activity,ax,ay,az,ecg"
    path.write_text("\n".join([head, *rows]) + "\n")
    return path


def _mapping(tmp_path: Path, text: str = TABLE_MAPPING) -> ImportMapping:
    path = tmp_path / "mapping.toml"
    path.write_text(text)
    return ImportMapping.read(path)


def _good_rows() -> list[str]:
    return (
        _rows(1, 1, ["sit"] * 20 + ["walk"] * 20, 0)
        + _rows(1, 2, ["walk"] * 30, 1)
        + _rows(2, 1, ["sit"] * 25, 2)
    )


def test_a_long_table_becomes_one_recording_per_subject_and_session(tmp_path: Path) -> None:
    # Prepare
    table = _table(tmp_path, _good_rows())

    # Execute
    target = import_table(table, _mapping(tmp_path), tmp_path / "out")
    ds = load_dataset_folder(target)
    report = check_dataset_folder(target)

    # Assert: 4 s -> 7 windows, 3 s -> 5, 2.5 s -> 4; labels by majority per window
    assert report.ok and report.recordings == {1: 2, 2: 1}
    assert ds.windows["wrist_acc"].shape == (16, 10, 3) and ds.windows["ecg"].shape == (16, 5, 1)
    assert ds.subjects.tolist() == [1] * 12 + [2] * 4
    assert ds.labels[:7].tolist() == [0, 0, 0, 0, 1, 1, 1]
    first = np.loadtxt(table, delimiter=",", skiprows=1, usecols=(3, 4, 5), max_rows=10)
    assert np.allclose(ds.windows["wrist_acc"][0], first, atol=1e-6)


def test_whole_recordings_split_a_block_at_each_label_change(tmp_path: Path) -> None:
    # Prepare
    mapping = _mapping(
        tmp_path,
        table_mapping(WHOLE),
    )
    table = _table(tmp_path, _good_rows())

    # Execute
    ds = load_dataset_folder(import_table(table, mapping, tmp_path / "out"))

    # Assert: subject 1 session 1 -> sit, walk; session 2 -> walk; subject 2 -> sit
    assert ds.labels.tolist() == [0, 1, 1, 0] and ds.trials.tolist() == [1, 1, 2, 1]
    assert ds.windows["wrist_acc"].shape == (4, 10, 3)


@pytest.mark.parametrize(
    ("rows", "header", "message"),
    [
        (
            _rows(1, 1, ["sit"] * 20, 0),
            "subject,session,activity,ax,ay,ecg",
            "column 'az' is missing",
        ),
        ([*_rows(1, 1, ["sit"] * 20, 0), "1,1,sit,0.1,0.2"], None, "ragged rows"),
        (_rows(1, 1, ["sit"] * 10 + ["jog"] * 10, 0), None, "label 'jog' is not one of"),
        ([*_rows(1, 1, ["sit"] * 20, 0), "1,1,sit,abc,0,0,0"], None, "not a number"),
        (["x,1,sit,0,0,0,0"] * 20, None, "subject 'x' is not an integer"),
        (
            _rows(1, 1, ["sit"] * 20, 0)
            + _rows(2, 1, ["sit"] * 20, 1)
            + _rows(1, 1, ["sit"] * 20, 2),
            None,
            "not contiguous",
        ),
        (_rows(1, 1, ["sit"] * 20, 0) + ["1,1,sit,,0,0,0"] * 3, None, "NaN/inf (or empty cells)"),
    ],
)
def test_a_malformed_table_is_one_line_and_leaves_no_folder(
    tmp_path: Path, rows: list[str], header: str | None, message: str
) -> None:
    # Prepare
    table = _table(tmp_path, rows, header)
    mapping = _mapping(tmp_path)

    # Execute / Assert
    with pytest.raises(DataError) as err:
        import_table(table, mapping, tmp_path / "out")
    assert message in str(err.value) and str(table) in str(err.value)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_an_import_never_touches_an_existing_folder(tmp_path: Path) -> None:
    # Prepare: a data set imported before
    table = _table(tmp_path, _good_rows())
    first = import_table(table, _mapping(tmp_path), tmp_path / "out")
    before = sorted(p.relative_to(first) for p in first.rglob("*"))

    # Execute / Assert
    with pytest.raises(ConfigError, match="not empty"):
        import_table(table, _mapping(tmp_path), first)
    assert sorted(p.relative_to(first) for p in first.rglob("*")) == before


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.replace('columns = ["ecg"]', "columns = []"), "modalities.ecg.columns"),
        (lambda t: t.replace("[modalities.ecg]", "[modalities.ECG]"), "modalities.ECG"),
        (lambda t: t.replace('unit = "mV"', 'unit = "mV"\nrate_hz = 250.0'), "differs from"),
        (lambda t: t.replace('subject = "subject"\n', ""), "table.subject"),
        (lambda t: t.replace("rate_hz = 10.0", "rate_hz = 0"), "table.rate_hz"),
        (lambda t: t.replace("name =", "nom ="), "name"),
    ],
)
def test_a_bad_mapping_names_its_field(tmp_path: Path, change: object, message: str) -> None:
    text = change(TABLE_MAPPING)  # type: ignore[operator]
    with pytest.raises(DataError) as err:
        _mapping(tmp_path, text)
    assert message in str(err.value) and "mapping.toml" in str(err.value)


FILES_MAPPING = """
name = "two-rates"
classes = ["sit", "walk"]

[files]
pattern = "s{subject}/t{trial}_{label}/{modality}.csv"

[windowing]
mode = "sliding"
length_s = 1.0
stride_s = 1.0

[modalities.wrist_acc]
columns = ["ax", "ay", "az"]
rate_hz = 20.0
unit = "g"
window = 20

[modalities.ecg]
columns = ["v"]
rate_hz = 50.0
unit = "mV"
window = 50
"""


def _file(root: Path, rel: str, header: str, rows: int, width: int, seed: int) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    values = np.random.default_rng(seed).normal(size=(rows, width))
    lines = [header] + [",".join(f"{v:.5f}" for v in row) for row in values]
    path.write_text("\n".join(lines) + "\n")


def _files(root: Path) -> None:
    for i, (subject, trial, label) in enumerate([(1, 1, "sit"), (1, 2, "walk"), (2, 1, "walk")]):
        _file(root, f"s{subject}/t{trial}_{label}/wrist_acc.csv", "ax,ay,az", 60, 3, i)
        _file(root, f"s{subject}/t{trial}_{label}/ecg.csv", "v", 150, 1, 10 + i)


def test_per_recording_files_at_different_rates(tmp_path: Path) -> None:
    # Prepare
    _files(tmp_path / "raw")

    # Execute
    target = import_files(tmp_path / "raw", _mapping(tmp_path, FILES_MAPPING), tmp_path / "out")
    ds = load_dataset_folder(target)

    # Assert: 3 s each at 20 Hz and 50 Hz -> 3 windows of 1 s per recording
    assert ds.windows["wrist_acc"].shape == (9, 20, 3) and ds.windows["ecg"].shape == (9, 50, 1)
    assert ds.labels.tolist() == [0] * 3 + [1] * 3 + [1] * 3
    assert ds.trials.tolist() == [1, 1, 1, 2, 2, 2, 1, 1, 1]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r: (r / "s1/t1_sit/emg.csv").write_text("e\n1\n"), "modality 'emg' is not in"),
        (lambda r: (r / "s1/t1_sit/ecg.csv").write_text("w\n1\n2\n"), "column 'v' is missing"),
        (lambda r: (r / "s2/t1_walk/ecg.csv").write_text("v\n1\n2,3\n"), "ragged rows"),
        (
            lambda r: (
                (r / "s2/t5_jog/ecg.csv").parent.mkdir()
                or (r / "s2/t5_jog/ecg.csv").write_text("v\n1\n")
            ),
            "label 'jog'",
        ),
    ],
)
def test_malformed_files_are_one_line_and_leave_no_folder(
    tmp_path: Path, damage: object, message: str
) -> None:
    # Prepare
    _files(tmp_path / "raw")
    damage(tmp_path / "raw")  # type: ignore[operator]

    # Execute / Assert
    with pytest.raises(DataError) as err:
        import_files(tmp_path / "raw", _mapping(tmp_path, FILES_MAPPING), tmp_path / "out")
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_no_matching_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    with pytest.raises(DataError, match="no file matches the pattern"):
        import_files(tmp_path / "raw", _mapping(tmp_path, FILES_MAPPING), tmp_path / "out")


def test_quoted_labels_with_commas_and_hashes_read_as_written(tmp_path: Path) -> None:
    # Prepare: labels that a naive split or a comment-aware parser would cut
    mapping = _mapping(
        tmp_path, TABLE_MAPPING.replace('["sit", "walk"]', '["sit #1", "walk, fast"]')
    )
    rows = [r.replace(",sit,", ',"sit #1",') for r in _rows(1, 1, ["sit"] * 10, 0)]
    rows += [r.replace(",walk,", ',"walk, fast",') for r in _rows(1, 1, ["walk"] * 20, 0)][10:]
    plain = _rows(2, 1, ["sit"] * 20, 1)
    table = _table(tmp_path, rows + [r.replace(",sit,", ',"sit #1",') for r in plain])

    # Execute
    ds = load_dataset_folder(import_table(table, mapping, tmp_path / "out"))

    # Assert
    assert ds.labels.tolist() == [0, 0, 1, 0, 0, 0] and ds.subject_ids == (1, 2)


def test_a_table_saved_with_a_byte_order_mark_reads(tmp_path: Path) -> None:
    # Prepare: what spreadsheet programs write as "CSV UTF-8"
    table = _table(tmp_path, _good_rows())
    table.write_bytes(b"\xef\xbb\xbf" + table.read_bytes())

    # Execute
    ds = load_dataset_folder(import_table(table, _mapping(tmp_path), tmp_path / "out"))

    # Assert
    assert len(ds) == 16


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"1,1,sit,0,0,0,0\n1,1,sit,0,x1,0,0\n", "line 503, column 'ay': 'x1' is not a number"),
        (b"1,1,sit,0,0,0,0\n1,1,sit,0,\xff,0,0\n", "line 503: not UTF-8 text"),
        (b"1,1,sit,0,0,0,0\n1,1,sit,0,0\n", "line 503: 5 fields, the header has 7"),
        (b"1,1,sit,0,0,0,0\n1,y,sit,0,0,0,0\n", "line 503: session 'y' is not an integer"),
    ],
)
def test_a_bad_cell_is_named_by_line_and_column(tmp_path: Path, body: bytes, message: str) -> None:
    # Prepare: 500 good rows (lines 2-501) first, so the bad one is far into a block
    good = "".join(f"1,1,sit,{i},0,0,0\n" for i in range(500)).encode()
    table = tmp_path / "table.csv"
    table.write_bytes(b"subject,session,activity,ax,ay,az,ecg\n" + good + body)

    # Execute / Assert
    with pytest.raises(DataError) as err:
        import_table(table, _mapping(tmp_path), tmp_path / "out")
    assert f"{table}: {message}" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_a_repeated_header_column_is_refused(tmp_path: Path) -> None:
    table = _table(tmp_path, _rows(1, 1, ["sit"] * 5, 0), "subject,session,activity,ax,ax,az,ecg")
    with pytest.raises(DataError, match="column 'ax' appears twice"):
        import_table(table, _mapping(tmp_path), tmp_path / "out")
