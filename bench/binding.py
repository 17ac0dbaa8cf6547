"""Benchmark of binding search: our exact search against the paper's dense approach, FAISS and GEMM.

Run from the repository root::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/binding.py \
        --json bench/binding.json --markdown bench/PERFORMANCE.md

``--quick`` is a seconds-long smoke run (CI). What is measured, per dataset, size and ``d``:

* ``matmul-peak``: the plain fp32 product ``(N x d) @ (d x M)`` of the same size, in output tiles
  (the full ``N x M`` result never fits), output discarded: the best of 2-thread BLAS on 2048 x 2048
  tiles and one single-threaded BLAS per core; measured before and after each group and the higher
  kept, so ratios to it are conservative.
* ``exact-both``: :func:`topk_cosine_both`, k = 1, both binding directions in one pass.
* ``exact``: :func:`topk_cosine`, k = 1, one direction; ``exact-fp16``: the same over float16
  stored embeddings (top-1 agreement with float32 and the largest similarity error reported).
* ``paper-dense``: the paper's code path, ``sklearn.metrics.pairwise.cosine_similarity`` on the
  whole matrix, then ``argmax`` along both axes; only where ``N x M`` float32 fits in a third of
  the available memory, plus one extra size ("dense-fit"), the largest that fits.
* ``faiss-flat``: ``faiss.IndexFlatIP`` (exact, one direction).
* ``ann-hnsw`` / ``ann-ivf``: FAISS approximate search (build + search, one direction), recall@1
  against exact search on a sample of queries.

GFLOP/s counts ``2 N M d`` for every exact method (the work of the similarity matrix; selection
is overhead). When ``2 N M d`` exceeds ``--max-flops`` an exact method runs on the first
``n_run`` queries against all keys (recorded as ``queries_run``): its rate is per flop and the
keys are full-size. Peak memory is the largest resident-set growth above what was resident
before the call (sampled every 2 ms), i.e. what the method allocates on top of its inputs.

Datasets: ``random`` (isotropic Gaussian, normalised), ``lowrank`` (a 16-dimensional Gaussian
latent through a fixed random linear map plus 5% isotropic noise: random data with the low
intrinsic dimension of learnt embeddings; used where approximate search is run, since on
isotropic 128-d data no graph or list index reaches high recall, which the ``random`` ANN row at
100k shows), and ``utd`` (UTD-MHAD accelerometer windows through a fixed feature map, see
:func:`utd_embeddings`; there is no trained encoder here, so these are *not* the paper's encoder
embeddings, and larger N is reached by augmenting the 861 recordings).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import glob
import json
import math
import os
import platform
import re
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mmbind.binding.ann import AnnIndex, AnnParams, estimate_recall
from mmbind.binding.search import l2_normalize, to_storage, topk_cosine, topk_cosine_both

F32 = NDArray[np.float32]
REPO = Path(__file__).resolve().parents[1]
DEFAULT_UTD = REPO.parent / "shared" / "data" / "utd_mhad"


# --------------------------------------------------------------------------- measurement


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _available_bytes() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 8 << 30  # pragma: no cover


@contextlib.contextmanager
def peak_memory() -> Iterator[list[int]]:
    """Yield a one-element list that holds, on exit, the peak memory growth in bytes.

    The larger of the resident-set growth (sampled every 2 ms: catches C++ allocations, e.g.
    FAISS) and the peak of ``tracemalloc`` (numpy reports its buffers to it: catches buffers that
    reuse heap the allocator kept from an earlier call, which RSS cannot see).
    """
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    traced0 = tracemalloc.get_traced_memory()[0]
    base = _rss_bytes()
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            stop.wait(0.002)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out = [0]
    try:
        yield out
    finally:
        stop.set()
        t.join()
        peak[0] = max(peak[0], _rss_bytes())
        traced = tracemalloc.get_traced_memory()[1] - traced0
        tracemalloc.stop()
        out[0] = max(0, peak[0] - base, traced)


@dataclass
class Row:
    dataset: str
    n_queries: int
    n_keys: int
    d: int
    method: str
    seconds: float
    queries_run: int
    gflops: float | None = None
    ratio_peak: float | None = None
    ratio_dense: float | None = None
    ratio_faiss: float | None = None
    peak_mem_mb: float | None = None
    recall_at_1: float | None = None
    recall_stderr: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


REPEAT_UNDER_S = 4.0
"""Calls faster than this are repeated (up to 3 runs) and the best time kept: the machine is
shared and noisy, and the best of a few runs is the least disturbed one."""


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """Run ``fn``; return (result, best seconds, peak MiB above what was allocated before)."""
    with peak_memory() as mem:
        t0 = time.perf_counter()
        res = fn()
        dt = time.perf_counter() - t0
    for _ in range(2):
        if dt >= REPEAT_UNDER_S:
            break
        t0 = time.perf_counter()
        fn()
        dt = min(dt, time.perf_counter() - t0)
    return res, dt, mem[0] / 2**20


def blas_info() -> list[dict[str, Any]]:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover
        return []
    keep = ("internal_api", "prefix", "version", "architecture", "num_threads", "filepath")
    return [{k: i.get(k) for k in keep} for i in threadpool_info()]


# --------------------------------------------------------------------------- data


def random_unit(n: int, d: int, seed: int) -> F32:
    rng = np.random.default_rng(seed)
    out = np.empty((n, d), np.float32)
    for s in range(0, n, 65536):  # chunked: no float64 temporaries at 1M x d
        out[s : s + 65536] = rng.standard_normal((min(65536, n - s), d), dtype=np.float32)
    return l2_normalize(out)


def lowrank_unit(n: int, d: int, seed: int, rank: int = 16, noise: float = 0.05) -> F32:
    w = np.random.default_rng(1234).standard_normal((rank, d)).astype(np.float32)
    rng = np.random.default_rng(seed)
    out = np.empty((n, d), np.float32)
    for s in range(0, n, 65536):
        m = min(65536, n - s)
        z = rng.standard_normal((m, rank), dtype=np.float32)
        e = rng.standard_normal((m, d), dtype=np.float32)
        out[s : s + m] = z @ w + noise * math.sqrt(rank) * e
    return l2_normalize(out)


def load_utd_acc(root: Path) -> tuple[F32, NDArray[np.int64]]:
    """All UTD-MHAD accelerometer recordings resampled to 120 samples: (861, 120, 3), subjects."""
    from scipy.io import loadmat
    from scipy.signal import resample

    files = sorted(glob.glob(str(root / "Inertial" / "*_inertial.mat")))
    if not files:
        raise FileNotFoundError(f"no UTD-MHAD inertial files under {root}")
    seqs, subjects = [], []
    for f in files:
        acc = np.asarray(loadmat(f)["d_iner"], np.float64)[:, :3]
        seqs.append(resample(acc, 120, axis=0))  # FFT resampling, as the paper's code
        m = re.search(r"_s(\d+)_", os.path.basename(f))
        subjects.append(int(m.group(1)) if m else 0)
    return np.stack(seqs).astype(np.float32), np.asarray(subjects, np.int64)


def utd_embeddings(
    base: F32, n: int, d: int, seed: int, max_files: int | None = None
) -> tuple[F32, str]:
    """Embed UTD-MHAD accelerometer windows with a fixed, deterministic feature map.

    Each window (120 x 3, the paper's resampling) is standardised per axis with dataset-wide
    constants, flattened (360) and mapped through fixed seeded random ReLU features
    ``relu(x W / sqrt(360))`` with ``W`` of shape (360, d), then L2-normalised. The first
    ``len(base)`` rows are the recordings themselves; beyond that each row is an augmented copy
    of a random recording (per-axis gain N(1, 0.1), time shift of up to +-6 samples by linear
    interpolation, additive noise of 0.02 g), so N can exceed the 861 recordings.
    """
    rng = np.random.default_rng(seed)
    if max_files is not None:
        base = base[:max_files]
    nb = base.shape[0]
    w = np.random.default_rng(4321).standard_normal((360, d)).astype(np.float32) / np.sqrt(360)
    mean = base.mean(axis=(0, 1), keepdims=True)
    std = base.std(axis=(0, 1), keepdims=True)
    out = np.empty((n, d), np.float32)
    t = np.arange(120, dtype=np.float32)
    for s in range(0, n, 32768):
        m = min(32768, n - s)
        pick = (np.arange(s, s + m) % nb) if s + m <= nb else rng.integers(0, nb, m)
        x = base[pick].copy()
        aug = np.arange(s, s + m) >= nb
        if aug.any():
            xa = x[aug]
            shift = rng.uniform(-6, 6, size=(xa.shape[0], 1)).astype(np.float32)
            pos = np.clip(t[None, :] + shift, 0, 119)
            lo = np.floor(pos).astype(np.int64)
            hi = np.minimum(lo + 1, 119)
            frac = (pos - lo)[:, :, None]
            rows = np.arange(xa.shape[0])[:, None]
            xa = xa[rows, lo] * (1 - frac) + xa[rows, hi] * frac
            xa *= rng.normal(1.0, 0.1, size=(xa.shape[0], 1, 3)).astype(np.float32)
            xa += 0.02 * rng.standard_normal(xa.shape, dtype=np.float32)
            x[aug] = xa
        feats = ((x - mean) / std).reshape(m, 360)
        out[s : s + m] = np.maximum(feats @ w, 0.0)
    how = f"{nb} UTD-MHAD recordings" + (f" + {n - nb} augmented copies" if n > nb else "")
    return l2_normalize(out), how


def make_pair(
    name: str, n: int, d: int, utd: tuple[F32, NDArray[np.int64]] | None, quick: bool
) -> tuple[F32, F32, str]:
    """Two nodes' embeddings (a, b), each (n, d)."""
    if name == "random":
        return random_unit(n, d, 1), random_unit(n, d, 2), "isotropic Gaussian"
    if name == "lowrank":
        return lowrank_unit(n, d, 1), lowrank_unit(n, d, 2), "16-d latent + 5% noise"
    if name == "utd":
        assert utd is not None
        seqs, subj = utd
        # node A: subjects 1-4, node B: subjects 5-8 (different people, as in binding)
        a, how = utd_embeddings(seqs[subj <= 4], n, d, 11, 40 if quick else None)
        b, _ = utd_embeddings(seqs[subj > 4], n, d, 12, 40 if quick else None)
        return a, b, how + " per node (A: subjects 1-4, B: 5-8)"
    raise ValueError(name)


# --------------------------------------------------------------------------- methods


def gemm_peak(a: F32, b: F32, budget_s: float) -> tuple[float, bool]:
    """GFLOP/s of the plain product a @ b.T in output tiles; best of two threadings.

    Runs the full product if it fits in ``budget_s`` per threading, else a leading part of it.
    Returns (GFLOP/s, sampled).
    """
    from threadpoolctl import threadpool_limits

    n, m, d = a.shape[0], b.shape[0], a.shape[1]
    best, sampled = 0.0, False

    def run(tq: int, tk: int, workers: int) -> tuple[float, bool]:
        tiles = [(i, j) for i in range(0, n, tq) for j in range(0, m, tk)]
        lock = threading.Lock()
        it = iter(tiles)
        done = [0.0]
        t0 = time.perf_counter()

        def work() -> None:
            out = np.empty((tq, tk), np.float32)
            while time.perf_counter() - t0 < budget_s:
                with lock:
                    tile = next(it, None)
                if tile is None:
                    return
                i, j = tile
                x, y = a[i : i + tq], b[j : j + tk]
                np.matmul(x, y.T, out=out[: len(x), : len(y)])
                with lock:
                    done[0] += 2.0 * len(x) * len(y) * d

        if workers == 1:
            work()
        else:
            with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
                list(pool.map(lambda _: work(), range(workers)))
        dt = time.perf_counter() - t0
        return done[0] / dt / 1e9, done[0] < 2.0 * n * m * d

    np.matmul(a[:256], b[:256].T)  # warm up BLAS threads
    for tq, tk, workers in ((2048, 2048, 1), (512, 4096, 2)):
        g, s = run(tq, tk, workers)
        best, sampled = max(best, g), sampled or s
    return best, sampled


def paper_dense(a: F32, b: F32) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """The paper's approach: the whole cosine matrix, then argmax in both directions."""
    from sklearn.metrics.pairwise import cosine_similarity

    s = cosine_similarity(a, b)
    fwd, back = s.argmax(axis=1), s.argmax(axis=0)
    del s
    return fwd, back


def faiss_flat(a: F32, b: F32) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    import faiss

    faiss.omp_set_num_threads(os.cpu_count() or 1)
    index = faiss.IndexFlatIP(b.shape[1])
    index.add(b)
    sims, idx = index.search(a, 1)
    return sims, idx


# --------------------------------------------------------------------------- driver


@dataclass
class Config:
    sizes: list[int]
    dims: list[int]
    approx_sizes: list[int]
    approx_dims: list[int]
    datasets: list[str]
    approx_datasets: list[str]
    max_flops: float
    peak_budget_s: float
    dense_fraction: float
    dense_fit: bool
    ann_params: AnnParams
    quick: bool
    utd_dir: Path
    recall_sample: int


def run_exact_group(
    rows: list[Row],
    ds: str,
    n: int,
    d: int,
    a: F32,
    b: F32,
    cfg: Config,
    log: Callable[[str], None],
    dense_only: bool = False,
) -> None:
    flops_full = 2.0 * n * n * d
    n_run = n if flops_full <= cfg.max_flops else max(1024, int(cfg.max_flops / (2.0 * n * d)))
    n_run = min(n, n_run)
    qa = a[:n_run]
    flops = 2.0 * n_run * n * d

    def add(method: str, dt: float, mem: float, **extra: Any) -> Row:
        row = Row(ds, n, n, d, method, dt, n_run, flops / dt / 1e9, peak_mem_mb=mem, extra=extra)
        rows.append(row)
        log(f"  {method:12s} {dt:8.2f} s  {row.gflops:7.1f} GFLOP/s  {mem:8.1f} MiB")
        return row

    peak1, sampled = gemm_peak(qa, b, cfg.peak_budget_s)
    log(f"[{ds} N=M={n} d={d} queries_run={n_run}] matmul peak {peak1:.1f} GFLOP/s")

    (fwd, _back), dt, mem = timed(lambda: topk_cosine_both(qa, b, 1, normalized=True))
    add("exact-both", dt, mem)
    if not dense_only:
        (s32, i32), dt, mem = timed(lambda: topk_cosine(qa, b, 1, normalized=True))
        add("exact", dt, mem)
        q16, k16 = to_storage(qa, normalized=True), to_storage(b, normalized=True)
        (s16, i16), dt, mem = timed(lambda: topk_cosine(q16, k16, 1, normalized=True))
        true16 = np.sum(qa * b[i16[:, 0]], axis=1)
        add(
            "exact-fp16",
            dt,
            mem,
            top1_agreement=float(np.mean(i16[:, 0] == i32[:, 0])),
            max_sim_error=float(np.max(np.abs(s16[:, 0] - true16))),
            max_best_loss=float(np.max(s32[:, 0] - true16)),
            bytes_fp16=int(k16.nbytes),
            bytes_fp32=int(b.nbytes),
        )
        del q16, k16

    fits = n_run * n * 4 * 2.2 <= cfg.dense_fraction * _available_bytes()
    if fits:
        try:
            (dfwd, _dback), dt, mem = timed(lambda: paper_dense(qa, b))
            agree = float(np.mean(dfwd == fwd[1][:, 0]))
            add("paper-dense", dt, mem, agreement_with_exact=agree)
        except ImportError:
            log("  paper-dense skipped: scikit-learn not installed (pip install -e .[bench])")
    else:
        need = n_run * n * 4 / 2**30
        log(f"  paper-dense skipped: needs {need:.0f} GiB for the matrix alone")
        rows.append(
            Row(
                ds,
                n,
                n,
                d,
                "paper-dense",
                float("nan"),
                n_run,
                extra={"skipped": f"the {n_run}x{n} matrix needs {need:.0f} GiB"},
            )
        )
    if not dense_only:
        (_fs, _fi), dt, mem = timed(lambda: faiss_flat(qa, b))
        add("faiss-flat", dt, mem)

    peak2, s2 = gemm_peak(qa, b, cfg.peak_budget_s)
    peak = max(peak1, peak2)
    rows.append(
        Row(
            ds,
            n,
            n,
            d,
            "matmul-peak",
            flops / peak / 1e9,
            n_run,
            peak,
            extra={"sampled": sampled or s2, "before": peak1, "after": peak2},
        )
    )
    log(f"  matmul peak after {peak2:.1f}; kept {peak:.1f} GFLOP/s")


def run_approx_group(
    rows: list[Row],
    ds: str,
    n: int,
    d: int,
    a: F32,
    b: F32,
    cfg: Config,
    log: Callable[[str], None],
    kind: str = "hnsw",
) -> None:
    def build_and_search() -> tuple[NDArray[np.float32], NDArray[np.int64], float]:
        t0 = time.perf_counter()
        index = AnnIndex(b, kind, cfg.ann_params, normalized=True)  # type: ignore[arg-type]
        tb = time.perf_counter() - t0
        s, i = index.search(a, 1, normalized=True)
        return s, i, tb

    (_s, i, tbuild), dt, mem = timed(build_and_search)
    r, se = estimate_recall(a, b, i, sample=cfg.recall_sample, normalized=True)
    # a partner within 1e-3 of the best similarity binds as well (near-duplicate windows)
    r_tol, _ = estimate_recall(a, b, i, sample=cfg.recall_sample, normalized=True, tol=1e-3)
    p = cfg.ann_params
    row = Row(
        ds,
        n,
        n,
        d,
        f"ann-{kind}",
        dt,
        n,
        2.0 * n * n * d / dt / 1e9,
        peak_mem_mb=mem,
        recall_at_1=r,
        recall_stderr=se,
        extra={
            "build_s": tbuild,
            "search_s": dt - tbuild,
            "hnsw_m": p.hnsw_m,
            "ef_construction": p.ef_construction,
            "ef_search": p.ef_search,
            "recall_sample": min(n, cfg.recall_sample),
            "recall_within_1e-3": r_tol,
            "gflops_note": "exact-equivalent (2NMd / time)",
        },
    )
    rows.append(row)
    log(
        f"[{ds} N=M={n} d={d}] ann-{kind}: build {tbuild:.1f} s + search {dt - tbuild:.1f} s, "
        f"recall@1 {r:.4f} +- {se:.4f}, {mem:.0f} MiB"
    )


def fill_ratios(rows: list[Row]) -> None:
    groups: dict[tuple[str, int, int], dict[str, Row]] = {}
    for r in rows:
        groups.setdefault((r.dataset, r.n_queries, r.d), {})[r.method] = r
    for g in groups.values():
        peak, dense, flat = g.get("matmul-peak"), g.get("paper-dense"), g.get("faiss-flat")
        for r in g.values():
            if r.gflops is None or r.method.startswith("ann") or math.isnan(r.seconds):
                continue
            if peak and peak.gflops:
                r.ratio_peak = r.gflops / peak.gflops
            if dense and dense.gflops:
                r.ratio_dense = r.gflops / dense.gflops
            if flat and flat.gflops:
                r.ratio_faiss = r.gflops / flat.gflops


def fmt(x: float | None, spec: str) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def table(rows: list[Row]) -> str:
    head = (
        "| data | N = M | d | method | queries run | s | GFLOP/s | × peak | × dense | × faiss-flat "
        "| peak MiB | recall@1 | notes |"
    )
    lines = [head, "|" + "---|" * 13]
    for r in rows:
        note = ""
        if "skipped" in r.extra:
            note = "skipped: " + r.extra["skipped"]
        elif r.method == "exact-fp16":
            note = (
                f"top-1 agrees {r.extra['top1_agreement']:.4f}, max sim err "
                f"{r.extra['max_sim_error']:.1e}, half the bytes"
            )
        elif r.method == "paper-dense":
            note = f"top-1 agrees with exact {r.extra.get('agreement_with_exact', 0):.4f}"
        elif r.method == "matmul-peak":
            note = "sampled tiles" if r.extra.get("sampled") else "full product, tiled"
        elif r.method.startswith("ann"):
            note = (
                f"build {r.extra['build_s']:.0f} s + search {r.extra['search_s']:.0f} s; "
                f"recall on {r.extra['recall_sample']} queries "
                f"({r.extra.get('recall_within_1e-3', float('nan')):.4f} within 1e-3 of the best "
                "similarity); GFLOP/s exact-equivalent"
            )
        rec = r.recall_at_1
        se = "" if r.recall_stderr in (None, 0.0) else f" ± {r.recall_stderr:.4f}"
        lines.append(
            f"| {r.dataset} | {r.n_queries:,} | {r.d} | {r.method} | {r.queries_run:,} | "
            f"{fmt(r.seconds, '.2f')} | {fmt(r.gflops, '.1f')} | {fmt(r.ratio_peak, '.2f')} | "
            f"{fmt(r.ratio_dense, '.2f')} | {fmt(r.ratio_faiss, '.2f')} | "
            f"{fmt(r.peak_mem_mb, '.0f')} | "
            f"{fmt(rec, '.4f')}{se} "
            f"| {note} |"
        )
    return "\n".join(lines)


def parse(argv: list[str] | None) -> tuple[Config, argparse.Namespace]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--dims", type=int, nargs="+", default=[128, 1920])
    p.add_argument("--approx-sizes", type=int, nargs="*", default=[1_000_000])
    p.add_argument("--approx-dims", type=int, nargs="*", default=[128])
    p.add_argument("--datasets", nargs="*", default=["random", "utd"])
    p.add_argument("--approx-datasets", nargs="*", default=["lowrank", "utd"])
    p.add_argument(
        "--max-flops",
        type=float,
        default=4e12,
        help="larger exact runs use a leading subset of the queries (default 4e12)",
    )
    p.add_argument(
        "--peak-budget",
        type=float,
        default=8.0,
        help="seconds per GEMM-peak measurement (a leading part of the product)",
    )
    p.add_argument(
        "--dense-fraction",
        type=float,
        default=0.35,
        help="fraction of available memory the paper's dense matrix may take",
    )
    p.add_argument(
        "--no-dense-fit",
        action="store_true",
        help="skip the extra largest-size-that-fits run of the paper's approach",
    )
    p.add_argument("--hnsw-m", type=int, default=16)
    p.add_argument("--ef-construction", type=int, default=40)
    p.add_argument("--ef-search", type=int, default=64)
    p.add_argument("--recall-sample", type=int, default=2000)
    p.add_argument(
        "--no-isotropic-ann",
        action="store_true",
        help="skip the ANN row on isotropic random data at the largest exact size",
    )
    p.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    p.add_argument("--utd-mhad-dir", type=Path, default=DEFAULT_UTD)
    p.add_argument("--json", type=Path, default=None, help="write the results as JSON")
    p.add_argument("--markdown", type=Path, default=None, help="write the table as Markdown")
    ns = p.parse_args(argv)
    if ns.quick:
        ns.sizes, ns.dims, ns.approx_sizes, ns.approx_dims = [1500], [64], [5000], [32]
        ns.peak_budget, ns.recall_sample, ns.no_dense_fit = 0.3, 300, True
    cfg = Config(
        ns.sizes,
        ns.dims,
        ns.approx_sizes,
        ns.approx_dims,
        ns.datasets,
        ns.approx_datasets,
        ns.max_flops,
        ns.peak_budget,
        ns.dense_fraction,
        not ns.no_dense_fit,
        AnnParams(hnsw_m=ns.hnsw_m, ef_construction=ns.ef_construction, ef_search=ns.ef_search),
        ns.quick,
        ns.utd_mhad_dir,
        ns.recall_sample,
    )
    return cfg, ns


def main(argv: list[str] | None = None) -> int:
    cfg, ns = parse(argv)
    t_start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:7.1f}s] {msg}", flush=True)

    utd = None
    datasets = list(dict.fromkeys(cfg.datasets + cfg.approx_datasets))
    if "utd" in datasets:
        try:
            utd = load_utd_acc(cfg.utd_dir)
            log(f"UTD-MHAD: {len(utd[0])} accelerometer recordings from {cfg.utd_dir}")
        except (FileNotFoundError, ImportError) as exc:
            log(f"UTD-MHAD skipped: {exc}")
            cfg.datasets = [x for x in cfg.datasets if x != "utd"]
            cfg.approx_datasets = [x for x in cfg.approx_datasets if x != "utd"]

    rows: list[Row] = []
    notes: dict[str, str] = {}
    for ds in cfg.datasets:
        for d in cfg.dims:
            for n in cfg.sizes:
                a, b, how = make_pair(ds, n, d, utd, cfg.quick)
                notes[ds] = how
                run_exact_group(rows, ds, n, d, a, b, cfg, log)
                del a, b
                gc.collect()
    if cfg.dense_fit and cfg.datasets:
        # the largest N = M at which the paper's dense matrix fits; d = the smallest dim
        d = min(cfg.dims)
        n_fit = int(math.sqrt(cfg.dense_fraction * _available_bytes() / (4 * 2.2))) // 1000 * 1000
        if n_fit > 0 and n_fit not in cfg.sizes:
            ds = cfg.datasets[0]
            a, b, _ = make_pair(ds, n_fit, d, utd, cfg.quick)
            log(f"dense-fit: N = M = {n_fit}")
            run_exact_group(rows, ds, n_fit, d, a, b, cfg, log, dense_only=True)
            del a, b
    for ds in cfg.approx_datasets:
        for d in cfg.approx_dims:
            for n in cfg.approx_sizes:
                a, b, how = make_pair(ds, n, d, utd, cfg.quick)
                notes[ds] = how
                run_approx_group(rows, ds, n, d, a, b, cfg, log)
                del a, b
                gc.collect()
    if not (cfg.quick or ns.no_isotropic_ann) and "random" in cfg.datasets and cfg.approx_sizes:
        # the limit: isotropic random data at the smallest exact size >= 100k
        n = max(cfg.sizes)
        a, b, _ = make_pair("random", n, min(cfg.approx_dims), utd, False)
        run_approx_group(rows, "random", n, min(cfg.approx_dims), a, b, cfg, log)
        del a, b
    fill_ratios(rows)

    md = table(rows)
    print(md)
    env = {
        k: os.environ.get(k)
        for k in (
            "OPENBLAS_CORETYPE",
            "OPENBLAS_L2_SIZE",
            "OMP_NUM_THREADS",
            "OPENBLAS_NUM_THREADS",
        )
    }
    meta = {
        "command": " ".join([os.path.relpath(sys.executable, REPO), *sys.argv]),
        "machine": {
            "cores": os.cpu_count(),
            "platform": platform.platform(),
            "processor": platform.processor(),
            "blas": blas_info(),
            "env": env,
        },
        "numpy": np.__version__,
        "datasets": notes,
        "wall_s": time.perf_counter() - t_start,
    }
    if ns.json:
        ns.json.write_text(
            json.dumps({"meta": meta, "rows": [asdict(r) for r in rows]}, indent=1, default=float)
        )
    if ns.markdown:
        kernels = ", ".join(
            sorted({str(b["architecture"]) for b in blas_info() if b["architecture"]})
        )
        ns.markdown.write_text(
            "# Binding search performance\n\n"
            f"Command: `{meta['command']}`  \n"
            f"Machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
            f"BLAS kernels: {kernels}; "
            f"total wall {meta['wall_s']:.0f} s.  \n"
            f"Datasets: {json.dumps(notes)}\n\n{md}\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
