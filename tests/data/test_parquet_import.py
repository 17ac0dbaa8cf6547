"""Parquet tables: the same recordings as a CSV of the same table, and clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from table_mappings import SLIDING, WHOLE, table_mapping

from mmbind.client.data import csv_import
from mmbind.client.data.csv_import import ImportMapping, import_table
from mmbind.errors import DataError
from mmbind.server.cli import main


def _columns(seed: int) -> dict[str, list[object]]:
    """Three recordings' rows (subject 1 sessions 1-2, subject 2), odd values among them."""
    rng = np.random.default_rng(seed)
    n = [40, 30, 25]
    subject = [1] * (n[0] + n[1]) + [2] * n[2]
    session = [1] * n[0] + [2] * n[1] + [1] * n[2]
    label = (["sit"] * 20 + ["walk"] * 20) + ["walk"] * n[1] + ["sit"] * n[2]
    values = rng.normal(size=(sum(n), 4)) * 10.0 ** rng.integers(-8, 8, size=(sum(n), 4))
    values[3, 0], values[4, 1], values[5, 2] = 1e-310, -0.0, 5e-324
    return {
        "subject": subject,
        "session": session,
        "activity": label,
        **{c: values[:, i].tolist() for i, c in enumerate(["ax", "ay", "az", "ecg"])},
    }


def _write_csv(path: Path, columns: dict[str, list[object]]) -> None:
    names = list(columns)
    rows = zip(*(columns[c] for c in names), strict=True)
    lines = [",".join(names)] + [",".join(repr(v) if isinstance(v, float) else str(v)
                                          for v in row) for row in rows]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")


def _write_parquet(path: Path, columns: dict[str, list[object]], **types: pa.DataType) -> None:
    arrays = {}
    for c, v in columns.items():
        if types.get(c) == pa.string():
            v = [str(x) for x in v]
        arrays[c] = pa.array(v, type=types.get(c))
    pq.write_table(pa.table(arrays), path, row_group_size=17)


def _mapping(tmp_path: Path, windowing: str = SLIDING) -> ImportMapping:
    path = tmp_path / "mapping.toml"
    path.write_text(table_mapping(windowing))
    return ImportMapping.read(path)


def _folder(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}  # fmt: skip


@pytest.mark.parametrize("windowing", [SLIDING, WHOLE])
@pytest.mark.parametrize(
    "types",
    [
        {},
        {"subject": pa.string(), "session": pa.int32(), "activity": pa.dictionary(pa.int8(),
                                                                                   pa.string())},
    ],
)  # fmt: skip
def test_a_parquet_table_gives_the_folder_of_the_same_csv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, windowing: str, types: dict[str, pa.DataType]
) -> None:
    # Prepare: batches of 7 rows in row groups of 17, so recordings span both
    columns = _columns(0)
    _write_csv(tmp_path / "t.csv", columns)
    _write_parquet(tmp_path / "t.parquet", columns, **types)
    monkeypatch.setattr(csv_import, "_PARQUET_ROWS", 7)

    # Execute
    import_table(tmp_path / "t.csv", _mapping(tmp_path, windowing), tmp_path / "from-csv")
    import_table(tmp_path / "t.parquet", _mapping(tmp_path, windowing), tmp_path / "from-pq")

    # Assert
    assert _folder(tmp_path / "from-pq") == _folder(tmp_path / "from-csv")
    assert len(_folder(tmp_path / "from-csv")) > 3


def test_unlabelled_rows_are_nulls_as_empty_csv_cells(tmp_path: Path) -> None:
    # Prepare: rows 10-19 unlabelled (a null label; an empty cell in the CSV)
    columns = _columns(1)
    columns["activity"] = [None if 10 <= i < 20 else v for i, v in enumerate(columns["activity"])]
    _write_parquet(tmp_path / "t.parquet", columns)
    columns["activity"] = ["" if v is None else v for v in columns["activity"]]
    _write_csv(tmp_path / "t.csv", columns)

    # Execute
    import_table(tmp_path / "t.csv", _mapping(tmp_path, WHOLE), tmp_path / "from-csv")
    import_table(tmp_path / "t.parquet", _mapping(tmp_path, WHOLE), tmp_path / "from-pq")

    # Assert
    assert _folder(tmp_path / "from-pq") == _folder(tmp_path / "from-csv")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: p.write_bytes(b"PAR1 not really"), "not a readable Parquet file"),
        (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "not a readable"),
        (
            lambda p: _write_parquet(p, {k: v for k, v in _columns(0).items() if k != "az"}),
            "column 'az' is missing",
        ),
        (
            lambda p: _write_parquet(p, {**_columns(0), "ay": [str(v) for v in _columns(0)["ay"]]}),
            "column 'ay' has type string; it must be a floating-point or integer column",
        ),
        (
            lambda p: _write_parquet(p, {**_columns(0), "subject": [1.0] * 95}),
            "column 'subject' has type double; it must be an integer or text column",
        ),
        (
            lambda p: _write_parquet(p, {**_columns(0), "ax": [None] * 3 + [0.0] * 92}),
            "NaN/inf (or empty cells)",
        ),
        (
            lambda p: _write_parquet(p, {**_columns(0), "activity": ["jog"] * 95}),
            "row 1: label 'jog' is not one of the mapping's classes",
        ),
        (
            lambda p: _write_parquet(p, {**_columns(0), "session": [1] * 40 + [None] * 55}),
            "row 41: session '' is not an integer",
        ),
    ],
)
def test_a_malformed_parquet_table_is_one_line_and_leaves_no_folder(
    tmp_path: Path, damage: object, message: str
) -> None:
    # Prepare
    path = tmp_path / "t.parquet"
    _write_parquet(path, _columns(0))
    damage(path)  # type: ignore[operator]

    # Execute / Assert
    with pytest.raises(DataError) as err:
        import_table(path, _mapping(tmp_path), tmp_path / "out")
    assert message in str(err.value) and str(path) in str(err.value)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_format_parquet_reads_a_file_of_any_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    _write_parquet(tmp_path / "export.bin", _columns(0))
    _mapping(tmp_path)

    # Execute
    code = main(
        ["data", "import", "table", str(tmp_path / "export.bin"), str(tmp_path / "out"),
         "--mapping", str(tmp_path / "mapping.toml"), "--format", "parquet"]
    )  # fmt: skip

    # Assert
    assert code == 0 and "recordings: 3" in capsys.readouterr().out
