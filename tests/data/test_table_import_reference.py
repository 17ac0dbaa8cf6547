"""The table importer against the previous one (tests/data/reference_csv_import.py).

For any table, odd cells included (``1e-310``, ``-0.0``, many digits, a leading ``+``, padding
spaces, ``1_0``, quotes, blank lines, CRLF line ends, empty or non-numeric cells, non-integer
ids), the new importer writes a folder byte-identical to the previous importer's, or both
refuse the table with a DataError (the new one naming the line).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference_csv_import import ImportMapping as ReferenceMapping
from reference_csv_import import import_table as reference_import_table
from table_mappings import WHOLE, table_mapping

from mmbind.client.data import csv_import
from mmbind.client.data.csv_import import ImportMapping, import_table
from mmbind.errors import DataError

SLIDING = 'mode = "sliding"\nlength_s = 0.4\nstride_s = 0.2'


def _reference_mapping(windowing: str) -> str:
    return table_mapping(windowing, name="reference", acc=("acc", ["ax", "ay"], 4), ecg_window=2)


ODD_CELLS = (
    "1e-310",
    "-0.0",
    "+1.5",
    " 2.25 ",
    "0.1000000000000000055511151231257827021181583404541015625",
    "123456789012345678901234567890",
    "1E5",
    "1.",
    ".5",
    "1_0",
    "-1e308",
    "4.9e-324",
    '"3.5"',
    "",
    "nan",
    "inf",
    "abc",
    "  ",
    "0x10",
)
_odd = st.sampled_from(ODD_CELLS)
_cell = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=64).map(repr),
    st.floats(-1e3, 1e3, allow_nan=False).map(lambda v: f"{v:.5f}"),
    _odd,
)
_subject = st.sampled_from(["1", "2", " 1", "+2", "01", "x"])
_label = st.sampled_from(["sit", "walk", " sit", "1", "0", "", "jog", '"walk"'])


def _folder_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}  # fmt: skip


@st.composite
def _tables(draw: st.DrawFn) -> str:
    """A table: runs of rows per (subject, session), odd cells now and then."""
    lines = ["subject,session,activity,ax,ay,ecg"]
    for _ in range(draw(st.integers(1, 4))):
        subject = draw(st.sampled_from(["1", "2", "3"]) | _subject)
        session = draw(st.sampled_from(["1", "2"]))
        label = draw(st.sampled_from(["sit", "walk"]) | _label)
        for _ in range(draw(st.integers(1, 12))):
            if draw(st.integers(0, 9)) == 0:
                label = draw(_label)
            cells = [draw(st.floats(-10, 10, allow_nan=False).map(lambda v: f"{v:.4f}"))
                     for _ in range(3)]  # fmt: skip
            if draw(st.integers(0, 3)) == 0:
                cells[draw(st.integers(0, 2))] = draw(_cell)
            lines.append(",".join([subject, session, label, *cells]))
            if draw(st.integers(0, 40)) == 0:
                lines.append(draw(st.sampled_from(["", "  ", "1,1,sit,0"])))
    end = draw(st.sampled_from(["\n", "\r\n"]))
    return end.join(lines) + end


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    table=_tables(),
    windowing=st.sampled_from([SLIDING, WHOLE]),
    chunk=st.sampled_from([64, 1 << 20]),
)
def test_the_import_equals_the_previous_importer(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    table: str,
    windowing: str,
    chunk: int,
) -> None:
    # Prepare: small blocks mix pyarrow's blocks with the exact reader's
    root = tmp_path_factory.mktemp("ref")
    monkeypatch.setattr(csv_import, "_CHUNK_BYTES", chunk)

    # Execute
    old, new = _import_both(root, table, windowing)

    # Assert
    for outcome in (old, new):
        if isinstance(outcome, DataError):
            assert "\n" not in str(outcome)
            assert str(root / "table.csv") in str(outcome) or "no recording was added" in str(
                outcome
            )
    assert _kind(new) == _kind(old)


def _import_both(root: Path, table: str, windowing: str) -> list[object]:
    """The previous importer's outcome, then this one's: the folder's bytes or the error."""
    path = root / "table.csv"
    path.write_bytes(table.encode())
    (root / "mapping.toml").write_text(_reference_mapping(windowing))
    outcomes: list[object] = []
    for run, mapping_type, target in (
        (reference_import_table, ReferenceMapping, root / "old"),
        (import_table, ImportMapping, root / "new"),
    ):
        try:
            run(path, mapping_type.read(root / "mapping.toml"), target)
            outcomes.append(_folder_bytes(target))
        except DataError as exc:
            outcomes.append(exc)
    return outcomes


def _refused_for(outcome: object) -> object:
    """A folder's bytes as they are; an error as what it names first (the file)."""
    return str(outcome).split(": ")[0] if isinstance(outcome, DataError) else outcome


def _kind(outcome: object) -> object:
    """A folder's bytes as they are; an error as its class (the messages differ on purpose)."""
    return DataError if isinstance(outcome, DataError) else outcome


@pytest.mark.parametrize("windowing", [SLIDING, WHOLE])
@pytest.mark.parametrize(
    ("where", "cell"),
    [(3, v) for v in ODD_CELLS]
    + [(0, " 1"), (0, "+1"), (0, "01"), (1, " 2 "), (2, " walk "), (2, "1"), (2, "")],
)
def test_one_odd_cell_is_read_as_before(
    tmp_path: Path, windowing: str, where: int, cell: str
) -> None:
    # Prepare: 30 rows of two sessions, one cell changed
    rows = [["1", "1" if i < 15 else "2", "sit" if i % 10 < 5 else "walk",
             f"{i / 7:.4f}", f"{-i / 3:.3f}", f"{i * 1.5:.2f}"] for i in range(30)]  # fmt: skip
    rows[17][where] = cell
    table = "\n".join(["subject,session,activity,ax,ay,ecg"] + [",".join(r) for r in rows]) + "\n"

    # Execute
    old, new = _import_both(tmp_path, table, windowing)

    # Assert: the same folder, byte for byte, or both refuse (for this table)
    assert _refused_for(new) == _refused_for(old)
