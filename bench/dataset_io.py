"""Benchmark of data set folders: CSV import throughput and memory, a node's load time.

    python bench/dataset_io.py --csv-mb 1024 --windows 10000 [--parquet] [--json out.json]

* **import**: writes a long CSV table of ``--csv-mb`` MB (8 subjects x 2 sessions of
  continuous rows: subject, session, activity and 18 sensor columns at 50 Hz, formatted like a
  lab export), then runs ``mmbind data import table`` on it in a child process and reports MB/s
  and the child's peak RSS (targets: >= 50 MB/s, <= 2 GB); with ``--parquet``, the same table
  written as Parquet is imported too (MB/s in the CSV's megabytes).
* **load**: writes a data set folder whose subjects 1-2 hold ``--windows`` windows (one
  recording per window, windowing ``"window"``: the most files per window) and times
  ``load_dataset_folder`` for those subjects (target: 10,000 windows in < 2 s).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MAPPING = """
name = "bench"
classes = ["a", "b", "c", "d"]
[table]
subject = "subject"
trial = "session"
label = "activity"
rate_hz = 50.0
[windowing]
mode = "sliding"
length_s = 2.0
stride_s = 1.0
[modalities.imu1]
columns = ["c0", "c1", "c2", "c3", "c4", "c5"]
unit = "1"
window = 100
[modalities.imu2]
columns = ["c6", "c7", "c8", "c9", "c10", "c11"]
unit = "1"
window = 100
[modalities.imu3]
columns = ["c12", "c13", "c14", "c15", "c16", "c17"]
unit = "1"
window = 50
"""


def write_csv(path: Path, megabytes: float) -> int:
    """A long table of about ``megabytes`` MB; returns its size in bytes."""
    rng = np.random.default_rng(0)
    target = int(megabytes * 1e6)
    blocks = 16
    header = "subject,session,activity," + ",".join(f"c{i}" for i in range(18)) + "\n"
    with path.open("w") as fh:
        fh.write(header)
        row_bytes = 3 + 2 + 2 + 18 * 10
        rows_per_block = max(1000, target // row_bytes // blocks)
        for b in range(blocks):
            subject, session = b // 2 + 1, b % 2 + 1
            done = 0
            while done < rows_per_block:
                n = min(50_000, rows_per_block - done)
                values = rng.normal(size=(n, 18))
                labels = (np.arange(done, done + n) // 500) % 4
                body = "\n".join(
                    f"{subject},{session},{'abcd'[lab]}," + ",".join(f"{v:.5f}" for v in row)
                    for lab, row in zip(labels, values, strict=True)
                )
                fh.write(body + "\n")
                done += n
    return path.stat().st_size


def _child(code: str) -> tuple[float, float, float]:
    """Run ``python -c code``; its wall seconds, CPU seconds and peak RSS in MB (``wait4``)."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code])
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"the import failed (exit {proc.returncode})")
    # the child's CPU time: what a loaded machine hides
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def _import_code(kind: str, table: Path, root: Path, target: str) -> str:
    return (
        "from mmbind.lab.data import import_csv; "
        f"import_csv({kind!r}, {str(table)!r}, {str(root / 'mapping.toml')!r}, "
        f"{str(root / target)!r})"
    )


def _to_parquet(csv_path: Path, parquet_path: Path) -> None:
    """The CSV table as Parquet, streamed (row groups of a block each): what a lab export is."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    types = {"subject": pa.int64(), "session": pa.int64(), "activity": pa.string()}
    types.update({f"c{i}": pa.float64() for i in range(18)})
    reader = pacsv.open_csv(
        csv_path,
        read_options=pacsv.ReadOptions(block_size=64 << 20),
        convert_options=pacsv.ConvertOptions(column_types=types),
    )
    with pq.ParquetWriter(parquet_path, reader.schema) as writer:
        for batch in reader:
            writer.write_batch(batch)


def bench_import(root: Path, megabytes: float, parquet: bool) -> dict[str, float]:
    csv_path = root / "table.csv"
    size = write_csv(csv_path, megabytes)
    (root / "mapping.toml").write_text(MAPPING)
    seconds, cpu, peak = _child(_import_code("table", csv_path, root, "imported"))
    out = {
        "csv_mb": round(size / 1e6, 1),
        "seconds": round(seconds, 2),
        "mb_per_s": round(size / 1e6 / seconds, 1),
        "cpu_seconds": round(cpu, 2),
        "mb_per_cpu_s": round(size / 1e6 / cpu, 1),
        "peak_rss_mb": round(peak, 1),
    }
    if parquet:  # the same table as Parquet: MB/s counted in the CSV's megabytes
        parquet_path = root / "table.parquet"
        _to_parquet(csv_path, parquet_path)
        csv_path.unlink()
        seconds, cpu, peak = _child(_import_code("table", parquet_path, root, "from-parquet"))
        out.update(
            parquet_mb=round(parquet_path.stat().st_size / 1e6, 1),
            parquet_seconds=round(seconds, 2),
            parquet_csv_mb_per_s=round(size / 1e6 / seconds, 1),
            parquet_cpu_seconds=round(cpu, 2),
            parquet_peak_rss_mb=round(peak, 1),
        )
        parquet_path.unlink()
    else:
        csv_path.unlink()
    return out


def bench_load(root: Path, windows: int) -> dict[str, float]:
    from mmbind.client.data.folder_reader import load_dataset_folder
    from mmbind.client.data.folder_writer import DatasetWriter
    from mmbind.client.data.recording import Recording
    from mmbind.dataset_manifest import DatasetManifest, ModalityEntry, Windowing
    from mmbind.modalities import Modality

    manifest = DatasetManifest(
        "load",
        ("a", "b"),
        (
            ModalityEntry(Modality("imu", 6, 50.0, 120, "1"), tuple(f"c{i}" for i in range(6))),
            ModalityEntry(
                Modality("pose", 60, 30.0, 40, "m", points=20), tuple(f"j{i}" for i in range(60))
            ),
        ),
        Windowing("window"),
    )
    rng = np.random.default_rng(0)
    folder = root / "load"
    with DatasetWriter(folder, manifest) as writer:
        for i in range(windows + 100):
            subject = 1 + (i % 2) if i < windows else 3  # subject 3: files the node never reads
            signals = {
                "imu": rng.normal(size=(120, 6)).astype(np.float32),
                "pose": rng.normal(size=(40, 60)).astype(np.float32),
            }
            writer.add(Recording(subject, i, signals, label=i % 2), f"r{i:06d}")
    start = time.perf_counter()
    import scipy.signal  # noqa: F401  (resampling; a node process imports it once)

    scipy_seconds = time.perf_counter() - start
    start, cpu = time.perf_counter(), time.process_time()
    ds = load_dataset_folder(folder, subjects=[1, 2])
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    # Baseline in the same run: np.load of the same files, as the reader did before.
    files = [p for s in (1, 2) for p in sorted((folder / "recordings" / f"subject-{s}").iterdir())]
    start = time.perf_counter()
    for path in files:
        with np.load(path, allow_pickle=False) as npz:
            {k: npz[k] for k in npz.files}
    np_load_seconds = time.perf_counter() - start
    # The same windows as continuous recordings (sliding, 2.4 s every 2.4 s): 20 files.
    sliding = DatasetManifest(
        "load-sliding", manifest.classes, manifest.modalities, Windowing("sliding", 2.4, 2.4)
    )
    streams = root / "load-sliding"
    per = windows // 20
    with DatasetWriter(streams, sliding) as writer:
        for i in range(20):
            signals = {
                "imu": rng.normal(size=(120 * per, 6)).astype(np.float32),
                "pose": rng.normal(size=(72 * per, 60)).astype(np.float32),  # 2.4 s at 30 Hz
            }
            writer.add(Recording(1 + i % 2, i, signals, label=i % 2), f"s{i:03d}")
    start, cpu = time.perf_counter(), time.process_time()
    long = load_dataset_folder(streams, subjects=[1, 2])
    sliding_seconds, sliding_cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "windows": len(ds),
        "files": len(ds),
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu_seconds, 3),
        "np_load_only_seconds": round(np_load_seconds, 3),
        "sliding_windows": len(long),
        "sliding_files": 20,
        "sliding_seconds": round(sliding_seconds, 3),
        "sliding_cpu_seconds": round(sliding_cpu, 3),
        "scipy_signal_import_seconds": round(scipy_seconds, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv-mb", type=float, default=1024.0)
    parser.add_argument("--windows", type=int, default=10_000)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--parquet", action="store_true", help="also import the same table as a Parquet file"
    )
    parser.add_argument("--tmp", type=Path, default=None, help="scratch folder (default: system)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        root = Path(tmp)
        load_before = os.getloadavg()
        results = {
            "load": bench_load(root, args.windows),
            "import": bench_import(root, args.csv_mb, args.parquet),
            "cpus": os.cpu_count(),
            # the machine's 1/5/15-minute load averages at the start and the end: the figures
            # of a shared machine are only comparable beside them
            "loadavg_start": [round(x, 2) for x in load_before],
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        }
    print(json.dumps(results, indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
