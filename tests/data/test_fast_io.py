"""The fast paths of data set folders read and parse exactly what the reference paths do.

* ``_read_stored_npz`` (one read per file) returns the arrays ``np.load`` returns, and gives
  way to ``np.load`` (``None``) for any file it does not fully understand.
* ``_parse_block`` (``np.loadtxt`` on well-formed blocks, one comma count per block) gives the
  row-by-row ``csv`` reading's values, and refuses ragged blocks as it does.
"""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmbind.client.data.csv_import import _parse_block
from mmbind.client.data.recording import Recording, _read_stored_npz, recording_bytes
from mmbind.errors import DataError


def _np_load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    samples=st.integers(1, 40),
    channels=st.integers(1, 7),
    dtype=st.sampled_from([np.float32, np.float64]),
    per_sample=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_stored_npz_equals_np_load(
    tmp_path: Path, samples: int, channels: int, dtype: type, per_sample: bool, seed: int
) -> None:
    # Prepare
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=(samples, channels)).astype(dtype)
    labels = rng.integers(-1, 3, size=samples) if per_sample else None
    recording = Recording(
        3, 7, {"a": signal, "b": signal[:, :1] * 2}, label=None if per_sample else 1,
        labels=labels, starts={"b": 0.25},
    )  # fmt: skip
    path = tmp_path / f"r{seed}.npz"
    path.write_bytes(recording_bytes(recording))

    # Execute
    fast = _read_stored_npz(path)

    # Assert
    reference = _np_load(path)
    assert fast is not None
    assert list(fast) == list(reference)
    for key, value in reference.items():
        assert fast[key].dtype == value.dtype and fast[key].shape == value.shape
        assert fast[key].tobytes() == value.tobytes()
        assert fast[key].flags.writeable


def test_compressed_npz_gives_way_to_np_load(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "c.npz"
    np.savez_compressed(path, subject=np.int64(1), a=np.ones((4, 2)))

    # Execute
    fast = _read_stored_npz(path)

    # Assert
    assert fast is None


@pytest.mark.parametrize("damage", ["flip", "truncate", "not_zip"])
def test_damaged_npz_gives_way_to_np_load(tmp_path: Path, damage: str) -> None:
    # Prepare
    data = bytearray(recording_bytes(Recording(1, 2, {"a": np.ones((5, 3))}, label=0)))
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF  # inside an array: the CRC-32 no longer matches
    elif damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data = bytearray(b"subject,trial\n1,2\n")
    path = tmp_path / "d.npz"
    path.write_bytes(bytes(data))

    # Execute
    fast = _read_stored_npz(path)

    # Assert
    assert fast is None
    with pytest.raises((OSError, ValueError, zipfile.BadZipFile, EOFError)):
        _np_load(path)


_cell = st.floats(allow_nan=False, allow_infinity=False, width=64).map(lambda v: f"{v:.6g}")


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.integers(1, 3),
            st.sampled_from(["a", " b", "c "]),
            st.lists(_cell, min_size=3, max_size=3),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_parse_block_equals_csv_reading(rows: list[tuple[int, str, list[str]]]) -> None:
    # Prepare
    lines = [f"{s},{lab},{','.join(v)}\n" for s, lab, v in rows]
    index = {"subject": 0, "label": 1, "x": 2, "y": 3, "z": 4}

    # Execute
    texts, values = _parse_block(
        Path("t.csv"), lines, index, ["subject", "label"], ["x", "y", "z"], 2
    )

    # Assert
    parsed = list(csv.reader(io.StringIO("".join(lines))))
    expected = np.array([[float(c) for c in r[2:]] for r in parsed])
    assert values.tobytes() == expected.tobytes()
    assert list(texts["label"]) == [r[1].strip() for r in parsed]
    assert list(texts["subject"]) == [r[0] for r in parsed]


@pytest.mark.parametrize(
    "lines",
    [
        ["1,a,1,2,3\n", "1,a,1,2,3,4\n", "1,a,1,2\n"],  # one long, one short: same comma total
        ["1,a,1,2,3\n", "1,a,1,2,3,4\n"],
    ],
)
def test_parse_block_refuses_ragged_rows(lines: list[str]) -> None:
    # Prepare
    index = {"subject": 0, "label": 1, "x": 2, "y": 3, "z": 4}

    # Execute / Assert
    with pytest.raises(DataError, match="ragged rows"):
        _parse_block(Path("t.csv"), lines, index, ["subject", "label"], ["x", "y", "z"], 2)
