"""One recording of a data set folder: a ``.npz`` file with its subject, trial, labels and signals.

Keys of the file (docs/dataset-format.md):

=================  ==========================  ==========================================
key                shape, dtype                 meaning
=================  ==========================  ==========================================
``subject``        ``()`` integer               subject id (also the folder ``subject-<S>``)
``trial``          ``()`` integer               trial / session id
``label``          ``()`` integer               the recording's class id, 0-based ...
``labels``         ``(L,)`` integer             ... or one class id per label sample
                                                (``-1``: unlabelled), at the manifest's
                                                ``windowing.label_rate_hz``
``<modality>``     ``(samples, channels)``      one signal per modality it holds, float
``start_s.<m>``    ``()`` float, optional       time of modality ``m``'s first sample [s]
=================  ==========================  ==========================================
"""

from __future__ import annotations

import io
import math
import os
import struct
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from numpy.typing import NDArray

from mmbind.dataset_manifest import DatasetManifest
from mmbind.errors import DataError

__all__ = ["START_PREFIX", "Recording", "read_recording", "recording_bytes", "write_recording"]

#: Key prefix of a modality's start time.
START_PREFIX = "start_s."
_RESERVED = {"subject", "trial", "label", "labels"}


@dataclass
class Recording:
    """A recording's content.

    Attributes
    ----------
    subject, trial : int
        Whose recording, and which trial or session of theirs.
    signals : dict[str, ndarray]
        Modality name -> ``(samples, channels)`` float32 or float64 values.
    label : int or None
        The class id of the whole recording, or ``None`` when ``labels`` is given.
    labels : ndarray or None
        ``(L,)`` int64 per-sample class ids (``-1`` = unlabelled) at the manifest's
        ``label_rate_hz``, or ``None``.
    starts : dict[str, float]
        Modality name -> time of its first sample in seconds (absent: 0).
    """

    subject: int
    trial: int
    signals: dict[str, NDArray[np.floating]]
    label: int | None = None
    labels: NDArray[np.int64] | None = None
    starts: dict[str, float] = field(default_factory=dict)

    def check(self, manifest: DatasetManifest, source: str) -> None:
        """Validate against ``manifest``.

        Raises
        ------
        DataError
            One line naming ``source``, the key and the fix: no signal, an unknown modality,
            a signal of the wrong shape or dtype, a label out of range, one label where the
            manifest wants per-sample labels or the other way round, a window-mode signal
            that is not one window long.
        """
        if not self.signals:
            raise DataError(f"{source}: holds no signal; add at least one modality array")
        known = set(manifest.modality_names)
        for name, signal in self.signals.items():
            if name not in known:
                raise DataError(
                    f"{source}: key {name!r} is not a modality of the manifest (it has: "
                    f"{', '.join(manifest.modality_names)}); rename it or add "
                    f"[modalities.{name}] to the manifest"
                )
            m = manifest.entry(name).modality
            if signal.ndim != 2 or signal.shape[1] != m.channels or signal.shape[0] < 1:
                raise DataError(
                    f"{source}: {name} has shape {signal.shape}; expected (samples, "
                    f"{m.channels}) as the manifest's modalities.{name}.channels says"
                )
            if not np.issubdtype(signal.dtype, np.floating):
                raise DataError(f"{source}: {name} has dtype {signal.dtype}; store floats")
            mode = manifest.windowing.mode
            if mode == "window" and signal.shape[0] != m.window:
                raise DataError(
                    f"{source}: {name} has {signal.shape[0]} samples; windowing mode 'window' "
                    f"needs exactly modalities.{name}.window = {m.window} (or use mode 'whole')"
                )
            if mode == "whole" and signal.shape[0] < 2:
                raise DataError(f"{source}: {name} has fewer than 2 samples; cannot resample")
        for name in self.starts:
            if name not in self.signals:
                raise DataError(f"{source}: {START_PREFIX}{name} has no {name!r} signal")
        per_sample = manifest.windowing.label_rate_hz is not None
        classes = len(manifest.classes)
        if per_sample:
            if self.labels is None:
                raise DataError(
                    f"{source}: no 'labels' array; the manifest's windowing.label_rate_hz asks "
                    "for one class id per label sample"
                )
            bad = (self.labels < -1) | (self.labels >= classes)
            if bad.any():
                raise DataError(
                    f"{source}: labels holds {int(self.labels[bad][0])}; class ids are 0.."
                    f"{classes - 1} (-1 = unlabelled)"
                )
        else:
            if self.label is None:
                raise DataError(
                    f"{source}: no 'label'; give the recording's class id (or set "
                    "windowing.label_rate_hz in the manifest for per-sample 'labels')"
                )
            if not 0 <= self.label < classes:
                raise DataError(
                    f"{source}: label {self.label} is out of range; class ids are 0..{classes - 1}"
                )


def _scalar(data: Mapping[str, NDArray[np.generic]], key: str, source: str, kind: str) -> float:
    if key not in data:
        raise DataError(f"{source}: key {key!r} is missing; store it as a {kind} scalar")
    value = np.asarray(data[key])
    ok = np.issubdtype(value.dtype, np.integer if kind == "integer" else np.number)
    if value.shape != () or not ok:
        raise DataError(
            f"{source}: {key!r} has shape {value.shape} dtype {value.dtype}; store a {kind} scalar"
        )
    return float(value) if kind != "integer" else int(value)


# A zip member's local header: signature, version, flags, method, time, date, CRC-32,
# compressed size, size, file name length, extra field length.
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
_NPY_MAGIC = b"\x93NUMPY"
_HEADERS: dict[bytes, tuple[tuple[int, ...], bool, np.dtype[Any]]] = {}


def _npy_header(buffer: bytearray, at: int) -> tuple[tuple[int, ...], bool, np.dtype[Any], int]:
    """``(shape, fortran_order, dtype, data offset)`` of the ``.npy`` at ``buffer[at:]``.

    Headers repeat across the files of a data set (same shapes): each distinct one is parsed
    once by numpy's own reader (``np.lib.format``), then looked up.
    """
    if bytes(buffer[at : at + 6]) != _NPY_MAGIC:
        raise ValueError("not a .npy member")
    major = buffer[at + 6]
    if major == 1:
        size, start = struct.unpack_from("<H", buffer, at + 8)[0], at + 10
    elif major == 2:
        size, start = struct.unpack_from("<I", buffer, at + 8)[0], at + 12
    else:
        raise ValueError("unknown .npy version")
    raw = bytes(buffer[at : start + size])
    parsed = _HEADERS.get(raw)
    if parsed is None:
        fp = io.BytesIO(raw)
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            parsed = np.lib.format.read_array_header_1_0(fp)
        else:
            parsed = np.lib.format.read_array_header_2_0(fp)
        if len(_HEADERS) < 4096:
            _HEADERS[raw] = parsed
    shape, fortran, dtype = parsed
    return shape, fortran, dtype, start + size


def _read_stored_npz(path: Path) -> dict[str, NDArray[np.generic]] | None:
    """The arrays of an uncompressed ``.npz`` (as :func:`recording_bytes` writes), or ``None``.

    One read of the file, then the zip members are walked from their local headers and each
    array is a view of those bytes (no per-member open and header parse as in ``np.load``);
    each member's CRC-32 is checked, as ``np.load`` does. ``None`` for anything else (a
    compressed member, a data descriptor, a member that is not a ``.npy``, an object array, a
    damaged file): :func:`np.load` then reads it, or says why not.
    """
    try:
        with path.open("rb", buffering=0) as fh:  # into one writable buffer, as np.load's
            buffer = bytearray(os.fstat(fh.fileno()).st_size)
            if fh.readinto(buffer) != len(buffer) or fh.read(1):
                return None  # changed while read: np.load says what it finds
        data: dict[str, NDArray[np.generic]] = {}
        at = 0
        while buffer[at : at + 4] == b"PK\x03\x04":
            fields = _LOCAL_HEADER.unpack_from(buffer, at)
            flags, method, crc = fields[2], fields[3], fields[6]
            name_len, extra_len = fields[9], fields[10]
            if method != zipfile.ZIP_STORED or flags & 0x09:  # deflated, encrypted, descriptor
                return None
            name_at = at + _LOCAL_HEADER.size
            name = bytes(buffer[name_at : name_at + name_len]).decode("utf-8")
            start = name_at + name_len + extra_len
            shape, fortran, dtype, offset = _npy_header(buffer, start)
            if not name.endswith(".npy") or dtype.hasobject or name[:-4] in data:
                return None
            end = offset + math.prod(shape) * dtype.itemsize
            if end > len(buffer) or zlib.crc32(memoryview(buffer)[start:end]) != crc:
                return None
            array = np.frombuffer(buffer, dtype=dtype, count=math.prod(shape), offset=offset)
            data[name[:-4]] = array.reshape(shape, order="F" if fortran else "C")
            at = end
        if buffer[at : at + 4] != b"PK\x01\x02" or not data:  # the central directory next
            return None
        return data
    except (OSError, ValueError, EOFError, UnicodeDecodeError, struct.error, SyntaxError):
        return None


def read_recording(path: Path, manifest: DatasetManifest) -> Recording:
    """Read and validate one recording file.

    Raises
    ------
    DataError
        Unreadable file, a missing or malformed key, or a content the manifest forbids
        (:meth:`Recording.check`); the message names the file.
    """
    source = str(path)
    data: dict[str, Any] | None = _read_stored_npz(path)
    if data is None:
        try:
            with np.load(path, allow_pickle=False) as npz:
                data = {k: npz[k] for k in npz.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise DataError(f"{source}: not a readable .npz file ({exc}); write it again") from None
    signals: dict[str, NDArray[np.floating]] = {}
    starts: dict[str, float] = {}
    for key, value in data.items():
        if key in _RESERVED:
            continue
        if key.startswith(START_PREFIX):
            starts[key.removeprefix(START_PREFIX)] = float(_scalar(data, key, source, "float"))
        else:
            signals[key] = value
    labels = None
    label = None
    if "labels" in data:
        raw = np.asarray(data["labels"])
        if raw.ndim != 1 or not np.issubdtype(raw.dtype, np.integer):
            raise DataError(
                f"{source}: 'labels' has shape {raw.shape} dtype {raw.dtype}; store a 1-D "
                "integer array"
            )
        labels = raw.astype(np.int64)
    if "label" in data:
        label = int(_scalar(data, "label", source, "integer"))
    recording = Recording(
        subject=int(_scalar(data, "subject", source, "integer")),
        trial=int(_scalar(data, "trial", source, "integer")),
        signals=signals,
        label=label,
        labels=labels,
        starts=starts,
    )
    recording.check(manifest, source)
    return recording


def write_recording(recording: Recording, file: BinaryIO) -> None:
    """Write the ``.npz`` file of ``recording`` (uncompressed) to the seekable ``file``.

    Written straight to ``file``: a recording of a long table is tens of MB, and going
    through a buffer would copy it twice more.
    """
    arrays: dict[str, NDArray[np.generic]] = {
        "subject": np.int64(recording.subject),  # type: ignore[dict-item]
        "trial": np.int64(recording.trial),  # type: ignore[dict-item]
    }
    if recording.label is not None:
        arrays["label"] = np.int64(recording.label)  # type: ignore[assignment]
    if recording.labels is not None:
        arrays["labels"] = np.asarray(recording.labels, dtype=np.int64)
    for name, signal in recording.signals.items():
        arrays[name] = np.ascontiguousarray(signal)
    for name, start in recording.starts.items():
        arrays[START_PREFIX + name] = np.float64(start)  # type: ignore[assignment]
    np.savez(file, **arrays)  # type: ignore[arg-type]


def recording_bytes(recording: Recording) -> bytes:
    """The ``.npz`` file of ``recording`` (uncompressed), as bytes."""
    buffer = io.BytesIO()
    write_recording(recording, buffer)
    return buffer.getvalue()
