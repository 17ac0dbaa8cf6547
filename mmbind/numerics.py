"""One floating-point path on every x86-64 machine: the CPU kernels torch may pick, pinned.

PyTorch's CPU build chooses its kernels by the instruction set the processor offers: ATen's
vectorised operators (``DEFAULT``, ``AVX2``, ``AVX512``), oneDNN's convolutions and MKL's
matrix products each dispatch on their own. The kernels of two instruction sets round
differently, and a training run amplifies the last bit into different figures: the same seed
and the same pinned install gave MMBind 0.763 on UTD-MHAD split 0 on one 2-core machine and
0.786 on an AMD EPYC (AVX2) one, and the tiny synthetic run's fine-tuning loss moved by 1e-4.

:func:`pin_cpu_kernels` asks all three libraries for their AVX2 kernels (present on every
x86-64 server and laptop of the last decade; on this 2-core AVX2 machine the pinned figures
are bit-identical to the unpinned ones), so that a run is meant to give the same figures on
any such machine (checked on AVX2 machines only: an AVX-512 one is still to be compared). It
runs when the package is imported, before any torch kernel is dispatched, so the
ClientApps, Ray workers and Flower processes a run starts inherit it through the environment.
A variable the user already set is left as it is (``ATEN_CPU_CAPABILITY=default`` and so on
choose another path); on a processor without AVX2, or not x86-64, nothing is set.
"""

from __future__ import annotations

import os
import platform
from collections.abc import MutableMapping
from pathlib import Path

__all__ = ["PINNED", "cpu_has_avx2", "pin_cpu_kernels"]

#: What each library is asked for: ATen's operators, oneDNN's primitives, MKL's BLAS.
PINNED: dict[str, str] = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "AVX2",
}


def cpu_has_avx2(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this is an x86-64 processor whose flags include ``avx2`` (Linux)."""
    if platform.machine().lower() not in {"x86_64", "amd64"}:
        return False
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            return "avx2" in line.split(":", 1)[-1].split()
    return False


def pin_cpu_kernels(
    environ: MutableMapping[str, str] | None = None, *, avx2: bool | None = None
) -> dict[str, str]:
    """Set :data:`PINNED` in ``environ`` (default ``os.environ``) where not already set.

    Parameters
    ----------
    environ : mutable mapping, optional
        The environment to change; ``os.environ`` by default.
    avx2 : bool, optional
        Whether the processor has AVX2; read from ``/proc/cpuinfo`` by default.

    Returns
    -------
    dict
        The variables this call set (empty where the processor has no AVX2 or every variable
        was already set).
    """
    env = os.environ if environ is None else environ
    added = {k: v for k, v in PINNED.items() if k not in env}
    # a process a run starts inherits every variable: it need not read /proc/cpuinfo again
    if not added or not (cpu_has_avx2() if avx2 is None else avx2):
        return {}
    env.update(added)
    return added
