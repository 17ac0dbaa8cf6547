"""Write a data set folder atomically: a half-written one never looks complete.

:class:`DatasetWriter` writes every recording into a hidden sibling folder
(``.<name>.partial-<pid>``), validates each against the manifest as it goes, writes the
manifest last and renames the folder into place. An error (or an interrupt) removes the
partial folder; a crash leaves only the hidden partial folder, which holds no manifest and so
is no data set.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from types import TracebackType

import numpy as np

from mmbind.dataset_manifest import MANIFEST_NAME, DatasetManifest
from mmbind.errors import ConfigError, DataError

from .folder_reader import recording_key, subject_folder
from .recording import Recording, write_recording

__all__ = ["DatasetWriter"]

log = logging.getLogger(__name__)


class DatasetWriter:
    """Write the data set folder ``target`` (which must not exist, or be an empty folder).

    Use as a context manager: on a clean exit the folder is committed (manifest last, then
    renamed into place); on an exception nothing is left behind.

    Parameters
    ----------
    target : str or Path
        The folder to create.
    manifest : DatasetManifest
        What the recordings must match.

    Raises
    ------
    ConfigError
        ``target`` exists and is not an empty folder.
    """

    def __init__(self, target: str | Path, manifest: DatasetManifest) -> None:
        self.target = Path(target).expanduser()
        if self.target.exists() and (not self.target.is_dir() or any(self.target.iterdir())):
            raise ConfigError(
                f"{self.target} already exists and is not empty; give a new folder (nothing "
                "was written)"
            )
        self.manifest = manifest
        self.partial = self.target.with_name(f".{self.target.name}.partial-{os.getpid()}")
        self._keys: dict[tuple[int, int, int], str] = {}
        self._names: set[tuple[int, str]] = set()
        self.recordings = 0

    def __enter__(self) -> DatasetWriter:
        if self.partial.exists():
            shutil.rmtree(self.partial)
        self.partial.mkdir(parents=True)
        return self

    def add(self, recording: Recording, name: str, origin: str = "") -> Path:
        """Write ``recording`` as ``recordings/subject-<S>/<name>.npz`` (in the partial folder).

        ``origin`` (e.g. the CSV file and lines it came from) starts every message about it.

        Raises
        ------
        DataError
            The recording does not match the manifest, holds NaN/inf, or repeats another's
            name or its (subject, trial, label).
        """
        source = f"recording {name!r} (subject {recording.subject})"
        if origin:
            source = f"{origin}: {source}"
        if not name or "/" in name or name.startswith("."):
            raise DataError(f"{source}: not a file name; use letters, digits, '_' and '-'")
        recording.check(self.manifest, source)
        for modality, signal in recording.signals.items():
            finite = np.isfinite(signal).all(axis=1)
            if not finite.all():
                first = int(np.flatnonzero(~finite)[0])
                raise DataError(
                    f"{source}: {modality} holds NaN/inf (or empty cells) in "
                    f"{int((~finite).sum())} samples, first at sample {first}; fill or cut "
                    "them before importing"
                )
        if (recording.subject, name) in self._names:
            raise DataError(f"{source}: a second recording with this name; names must differ")
        key = recording_key(recording)
        if key in self._keys:
            raise DataError(
                f"{source}: same subject, trial and label as {self._keys[key]!r} (trial "
                f"{key[1]}); two recordings of one trial are a duplicate: give distinct trial ids"
            )
        self._keys[key] = name
        self._names.add((recording.subject, name))
        folder = subject_folder(self.partial, recording.subject)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.npz"
        with path.open("wb") as fh:
            write_recording(recording, fh)
        self.recordings += 1
        return self.target / path.relative_to(self.partial)

    def commit(self) -> Path:
        """Write the manifest, then move the folder into place.

        Raises
        ------
        DataError
            No recording was added.
        """
        if not self.recordings:
            raise DataError(f"nothing to write to {self.target}: no recording was added")
        (self.partial / MANIFEST_NAME).write_text(self.manifest.to_toml(), encoding="utf-8")
        if self.target.exists():
            self.target.rmdir()  # empty (checked at the start)
        os.replace(self.partial, self.target)
        log.info("wrote %d recordings to %s", self.recordings, self.target)
        return self.target

    def abort(self) -> None:
        """Remove the partial folder."""
        shutil.rmtree(self.partial, ignore_errors=True)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            try:
                self.commit()
            except BaseException:
                self.abort()
                raise
        else:
            self.abort()
