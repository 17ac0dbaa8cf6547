"""One floating-point path on every x86-64 machine: the CPU kernels torch and numpy pick, pinned.

PyTorch's CPU build chooses its kernels by the instruction set the processor offers: ATen's
vectorised operators (``DEFAULT``, ``AVX2``, ``AVX512``), oneDNN's convolutions and MKL's
matrix products each dispatch on their own, and so does the OpenBLAS inside numpy's and
SciPy's wheels (``Haswell``, ``SkylakeX``, ...: every numpy matrix product, such as the
coordinator's binding and partner arithmetic). The kernels of two instruction sets round
differently, and a training run amplifies the last bit into different figures: the same seed
and the same pinned install gave MMBind 0.763 on UTD-MHAD split 0 on one 2-core machine and
0.786 on an AMD EPYC (AVX2) one, and the tiny synthetic run's fine-tuning loss moved by 1e-4.
With torch pinned and OpenBLAS not, an AVX-512 EPYC gave every method without binding the
AVX2 machine's figures to the last digit, and MMBind 75.8 % instead of 78.6 %: numpy's
OpenBLAS had picked its SkylakeX kernels there.

:func:`pin_cpu_kernels` asks each of these for its AVX2 kernels (present on every x86-64 server
and laptop of the last decade; on an AVX2 machine the pinned figures are bit-identical to the
unpinned ones), and numpy for its AVX2 ufunc loops (its AVX-512 ``exp`` of float64 rounds
otherwise), so that a run gives the same figures on any such machine. It runs when the package
is imported, before any torch kernel is dispatched and, where ``mmbind`` is imported first (its
command lines), before numpy loads; the ClientApps, Ray workers and Flower processes a run
starts inherit it through the environment. A program that imports numpy or runs torch kernels
*before* importing mmbind keeps that process's native kernels: import mmbind first, or set the
variables yourself. A variable the user already set is left as it is
(``ATEN_CPU_CAPABILITY=default`` and so on choose another path); on a processor without AVX2, or
not x86-64, nothing is set.
"""

from __future__ import annotations

import os
import platform
from collections.abc import MutableMapping
from pathlib import Path

__all__ = ["PINNED", "cpu_has_avx2", "pin_cpu_kernels"]

#: What each library is asked for: ATen's operators, oneDNN's primitives, MKL's BLAS (torch),
#: OpenBLAS's kernels (numpy, SciPy; ``Haswell`` is its name for the AVX2 ones), and numpy's
#: own ufunc loops (``exp``, ``log``, ... dispatch on ``X86_V3`` = AVX2 or ``X86_V4`` =
#: AVX-512; the names are numpy 2.4's, the version constraints.txt pins).
PINNED: dict[str, str] = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "AVX2",
    "OPENBLAS_CORETYPE": "Haswell",
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
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
