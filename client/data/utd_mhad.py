"""UTD-MHAD loader (Chen, Jafari, Kehtarnavaz, ICIP 2015), the paper's reference dataset.

The official release holds one ``.mat`` file per sequence and modality::

    Inertial/aA_sS_tT_inertial.mat   d_iner: (frames, 6) acc xyz [g] + gyro xyz [deg/s], 50 Hz
    Skeleton/aA_sS_tT_skeleton.mat   d_skel: (20, 3, frames) Kinect v1 joints [m], 30 Hz

with ``A`` the action (1..27), ``S`` the subject (1..8) and ``T`` the trial (1..4).
Three sequences are missing from the release (a8_s1_t4, a23_s6_t4, a27_s8_t4), so
the full set has 861 samples. Each whole sequence is resampled with
:func:`scipy.signal.resample` (FFT, as the paper's code; no cropping) to the registry
window: 120 IMU samples, 40 skeleton frames. Skeleton frames are flattened joint-major,
``channel = 3 * joint + axis``.

Parsed, resampled arrays are cached in-process per file, so repeated loads in one
process cost only the stacking of arrays (milliseconds).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from mmbind.errors import ConfigError, DataError
from mmbind.modalities import get_modality, parse_modalities

from .dataset import MultimodalDataset

__all__ = [
    "UTD_MHAD_ACTIONS",
    "UTD_MHAD_MODALITIES",
    "UTD_MHAD_SUBJECTS",
    "clear_utd_mhad_cache",
    "load_utd_mhad",
    "utd_mhad_sequences",
]

logger = logging.getLogger(__name__)

#: The 27 actions of UTD-MHAD, in order a1..a27 (label = action - 1).
UTD_MHAD_ACTIONS: tuple[str, ...] = (
    "right arm swipe to the left",
    "right arm swipe to the right",
    "right hand wave",
    "two hand front clap",
    "right arm throw",
    "cross arms in the chest",
    "basketball shoot",
    "right hand draw x",
    "right hand draw circle (clockwise)",
    "right hand draw circle (counter clockwise)",
    "draw triangle",
    "bowling (right hand)",
    "front boxing",
    "baseball swing from right",
    "tennis right hand forehand swing",
    "arm curl (two arms)",
    "tennis serve",
    "two hand push",
    "right hand knock on door",
    "right hand catch an object",
    "right hand pick up and throw",
    "jogging in place",
    "walking in place",
    "sit to stand",
    "stand to sit",
    "forward lunge (left foot forward)",
    "squat (two arms stretch out)",
)

#: Subject ids of the release.
UTD_MHAD_SUBJECTS: tuple[int, ...] = tuple(range(1, 9))

#: Modalities this loader can produce.
UTD_MHAD_MODALITIES: tuple[str, ...] = ("acc", "gyro", "skeleton")

_NUM_JOINTS = 20

# source kind -> (folder, file suffix, .mat key)
_SOURCES: dict[str, tuple[str, str, str]] = {
    "inertial": ("Inertial", "inertial", "d_iner"),
    "skeleton": ("Skeleton", "skeleton", "d_skel"),
}
_SOURCE_OF: dict[str, str] = {"acc": "inertial", "gyro": "inertial", "skeleton": "skeleton"}

SampleKey = tuple[int, int, int]  # (action, subject, trial), all 1-based

# (resolved path, mtime_ns, size) -> parsed arrays per modality
_FILE_CACHE: dict[tuple[Path, int, int], dict[str, NDArray[np.float32]]] = {}
_CACHE_LOCK = threading.Lock()


def clear_utd_mhad_cache() -> None:
    """Drop every parsed file held in the in-process cache."""
    with _CACHE_LOCK:
        _FILE_CACHE.clear()


def _validate_subjects(subjects: Sequence[int] | None) -> tuple[int, ...]:
    if subjects is None:
        return UTD_MHAD_SUBJECTS
    out: list[int] = []
    for s in subjects:
        if isinstance(s, bool) or not isinstance(s, int | np.integer):
            raise ConfigError(f"subject ids must be integers 1..8, got {s!r}")
        if int(s) not in UTD_MHAD_SUBJECTS:
            raise ConfigError(f"UTD-MHAD subject id {int(s)} does not exist; valid ids are 1..8")
        if int(s) not in out:
            out.append(int(s))
    if not out:
        raise ConfigError("subjects is empty; give at least one subject id in 1..8, or None")
    return tuple(sorted(out))


def _validate_modalities(modalities: Sequence[str]) -> tuple[str, ...]:
    if isinstance(modalities, str):
        modalities = (modalities,)
    names = parse_modalities(modalities)
    for name in names:
        if name not in UTD_MHAD_MODALITIES:
            raise ConfigError(
                f"UTD-MHAD has no {name!r} modality; valid modalities are: "
                f"{', '.join(UTD_MHAD_MODALITIES)}"
            )
    return names


def _scan(folder: Path, suffix: str) -> dict[SampleKey, Path]:
    """Map (action, subject, trial) -> file for every ``a*_s*_t*_<suffix>.mat`` in ``folder``."""
    pattern = f"{folder.name}/a*_s*_t*_{suffix}.mat"
    if not folder.is_dir():
        raise DataError(f"folder {folder} does not exist; expected files matching {pattern}")
    regex = re.compile(rf"a(\d+)_s(\d+)_t(\d+)_{suffix}\.mat")
    found: dict[SampleKey, Path] = {}
    for path in folder.iterdir():
        m = regex.fullmatch(path.name)
        if m is None:
            continue
        action, subject, trial = (int(g) for g in m.groups())
        if not 1 <= action <= len(UTD_MHAD_ACTIONS):
            logger.warning("ignoring %s: action %d is not in 1..27", path, action)
            continue
        found[(action, subject, trial)] = path
    if not found:
        raise DataError(f"no files in {folder} match the expected pattern {pattern}")
    return found


def _read_array(path: Path, key: str) -> NDArray[np.float64]:
    try:
        import scipy.io  # lazily: only a cache miss reads .mat files

        mat = scipy.io.loadmat(str(path), variable_names=[key])
    except Exception as exc:  # scipy raises many types for corrupt files
        raise DataError(f"cannot read {path} as a MATLAB .mat file: {exc}") from exc
    if key not in mat:
        raise DataError(f"{path} lacks the variable {key!r}; found: {sorted(mat)}")
    try:
        arr = np.asarray(mat[key], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: variable {key!r} is not numeric: {exc}") from exc
    if not np.isfinite(arr).all():
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise DataError(f"{path}: variable {key!r} holds {bad} NaN/inf values")
    return arr


def _parse_inertial(path: Path) -> dict[str, NDArray[np.float32]]:
    arr = _read_array(path, "d_iner")
    if arr.ndim != 2 or arr.shape[1] != 6 or arr.shape[0] < 2:
        raise DataError(
            f"{path}: d_iner has shape {arr.shape}; expected (frames >= 2, 6) "
            "= acc xyz then gyro xyz"
        )
    window = get_modality("acc").window
    import scipy.signal  # lazily: importing it costs ~1 s per ClientApp process

    res = scipy.signal.resample(arr, window, axis=0).astype(np.float32)
    return {"acc": np.ascontiguousarray(res[:, :3]), "gyro": np.ascontiguousarray(res[:, 3:])}


def _parse_skeleton(path: Path) -> dict[str, NDArray[np.float32]]:
    arr = _read_array(path, "d_skel")
    if arr.ndim != 3 or arr.shape[:2] != (_NUM_JOINTS, 3) or arr.shape[2] < 2:
        raise DataError(
            f"{path}: d_skel has shape {arr.shape}; expected ({_NUM_JOINTS}, 3, frames >= 2)"
        )
    frames = arr.transpose(2, 0, 1).reshape(arr.shape[2], _NUM_JOINTS * 3)  # joint-major
    window = get_modality("skeleton").window
    import scipy.signal

    return {"skeleton": scipy.signal.resample(frames, window, axis=0).astype(np.float32)}


_PARSERS = {"inertial": _parse_inertial, "skeleton": _parse_skeleton}


def _load_file(kind: str, path: Path) -> dict[str, NDArray[np.float32]]:
    stat = path.stat()
    key = (path, stat.st_mtime_ns, stat.st_size)
    with _CACHE_LOCK:
        hit = _FILE_CACHE.get(key)
    if hit is not None:
        return hit
    parsed = _PARSERS[kind](path)
    for arr in parsed.values():
        arr.flags.writeable = False  # cached: never handed out without a copy
    with _CACHE_LOCK:
        _FILE_CACHE[key] = parsed
    return parsed


def load_utd_mhad(
    data_dir: str | Path,
    *,
    subjects: Sequence[int] | None = None,
    modalities: Sequence[str] = ("acc", "gyro", "skeleton"),
) -> MultimodalDataset:
    """Load UTD-MHAD windows resampled to the registry shapes.

    Parameters
    ----------
    data_dir : str or Path
        Folder holding ``Inertial/`` and/or ``Skeleton/`` (only the folders the
        requested modalities need are read).
    subjects : sequence of int, optional
        Subject ids in 1..8 to keep; ``None`` keeps all.
    modalities : sequence of str
        Any of ``"acc"``, ``"gyro"``, ``"skeleton"``. A sample is kept only if every
        requested modality's file exists; skipped ones are logged at DEBUG.

    Returns
    -------
    MultimodalDataset
        ``windows["acc"|"gyro"]``: ``(N, 120, 3)``; ``windows["skeleton"]``:
        ``(N, 40, 60)``; ``labels = action - 1`` in 0..26; samples sorted by
        (subject, action, trial). 861 samples for all modalities and subjects.

    Raises
    ------
    ConfigError
        A subject id outside 1..8 or a modality UTD-MHAD does not have.
    DataError
        ``data_dir`` or a needed folder is missing, no file matches
        ``<Folder>/a*_s*_t*_<kind>.mat``, a file is unreadable, lacks its key, has
        the wrong shape or holds NaN/inf (the message names the file), or no
        sample of the requested subjects has every requested modality.
    """
    wanted_subjects = _validate_subjects(subjects)
    names = _validate_modalities(modalities)
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataError(
            f"UTD-MHAD folder {root} does not exist; expected a folder holding "
            "Inertial/a*_s*_t*_inertial.mat and Skeleton/a*_s*_t*_skeleton.mat"
        )
    root = root.resolve()

    kinds = [k for k in _SOURCES if any(_SOURCE_OF[m] == k for m in names)]
    found = {k: _scan(root / _SOURCES[k][0], _SOURCES[k][1]) for k in kinds}

    all_keys = set().union(*found.values())
    keys = sorted(
        (k for k in all_keys if k[1] in wanted_subjects), key=lambda k: (k[1], k[0], k[2])
    )
    complete: list[SampleKey] = []
    for key in keys:
        lacking = [k for k in kinds if key not in found[k]]
        if lacking:
            logger.debug("skipping a%d_s%d_t%d: no %s file", *key, " / ".join(sorted(lacking)))
            continue
        complete.append(key)
    if not complete:
        raise DataError(
            f"no UTD-MHAD sample of subjects {list(wanted_subjects)} has every requested "
            f"modality ({', '.join(names)}) under {root}"
        )

    per_kind = {k: [_load_file(k, found[k][key]) for key in complete] for k in kinds}
    windows = {
        m: np.stack([parsed[m] for parsed in per_kind[_SOURCE_OF[m]]]) for m in names
    }  # np.stack copies, so the cached arrays stay private
    logger.debug("loaded %d UTD-MHAD samples (%s) from %s", len(complete), ",".join(names), root)
    return MultimodalDataset(
        windows=windows,
        labels=np.array([k[0] - 1 for k in complete], dtype=np.int64),
        subjects=np.array([k[1] for k in complete], dtype=np.int64),
        trials=np.array([k[2] for k in complete], dtype=np.int64),
        num_classes=len(UTD_MHAD_ACTIONS),
        class_names=UTD_MHAD_ACTIONS,
    )


def utd_mhad_sequences(
    data_dir: str | Path, *, subjects: Sequence[int] | None = None
) -> Iterator[tuple[SampleKey, dict[str, NDArray[np.float64]]]]:
    """The raw sequences of UTD-MHAD, before any resampling, sample by sample.

    Yields ``((action, subject, trial), {"acc": (frames, 3), "gyro": (frames, 3),
    "skeleton": (frames, 60)})`` float64 arrays as the files hold them (skeleton frames
    flattened joint-major), for the samples that have both files, in (subject, action,
    trial) order, as :func:`load_utd_mhad` orders them.

    Raises
    ------
    ConfigError, DataError
        As :func:`load_utd_mhad`.
    """
    wanted = _validate_subjects(subjects)
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"UTD-MHAD folder {root} does not exist")
    found = {k: _scan(root.resolve() / _SOURCES[k][0], _SOURCES[k][1]) for k in _SOURCES}
    keys = sorted(
        (k for k in found["inertial"] if k[1] in wanted and k in found["skeleton"]),
        key=lambda k: (k[1], k[0], k[2]),
    )
    for key in keys:
        inertial = _read_array(found["inertial"][key], "d_iner")
        skeleton = _read_array(found["skeleton"][key], "d_skel")
        if inertial.ndim != 2 or inertial.shape[1] != 6:
            raise DataError(f"{found['inertial'][key]}: d_iner has shape {inertial.shape}")
        if skeleton.ndim != 3 or skeleton.shape[:2] != (_NUM_JOINTS, 3):
            raise DataError(f"{found['skeleton'][key]}: d_skel has shape {skeleton.shape}")
        frames = skeleton.transpose(2, 0, 1).reshape(skeleton.shape[2], _NUM_JOINTS * 3)
        yield (
            key,
            {
                "acc": np.ascontiguousarray(inertial[:, :3]),
                "gyro": np.ascontiguousarray(inertial[:, 3:]),
                "skeleton": np.ascontiguousarray(frames),
            },
        )
