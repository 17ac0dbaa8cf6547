"""The CPU kernels torch and numpy may pick are pinned to AVX2 on import, unless the user chose."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmbind.numerics import PINNED, cpu_has_avx2, pin_cpu_kernels

FLAGS = "processor\t: 0\nflags\t\t: fpu sse2 avx {extra} fma\n"


@pytest.mark.parametrize(("extra", "expected"), [("avx2", True), ("avx512f", False), ("", False)])
def test_avx2_is_read_from_the_flags_line(tmp_path: Path, extra: str, expected: bool) -> None:
    # Prepare
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(FLAGS.format(extra=extra))

    # Execute / Assert
    if expected and not cpu_has_avx2():  # not an x86-64 machine: never pinned
        pytest.skip("this processor is not x86-64 with AVX2")
    assert cpu_has_avx2(cpuinfo) is expected


def test_a_missing_cpuinfo_means_no_avx2(tmp_path: Path) -> None:
    assert cpu_has_avx2(tmp_path / "absent") is False


def test_pinning_sets_every_library_and_keeps_what_the_user_set() -> None:
    # Prepare
    env = {"MKL_CBWR": "COMPATIBLE", "PATH": "/bin"}

    # Execute
    added = pin_cpu_kernels(env, avx2=True)

    # Assert
    assert added == {
        "ATEN_CPU_CAPABILITY": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "OPENBLAS_CORETYPE": "Haswell",
        "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
    }
    assert env == {**PINNED, "MKL_CBWR": "COMPATIBLE", "PATH": "/bin"}


def test_nothing_is_pinned_without_avx2() -> None:
    env: dict[str, str] = {}
    assert pin_cpu_kernels(env, avx2=False) == {} and env == {}


def _after_import(code: str, **extra: str) -> str:
    """What ``code`` prints in a fresh process that imports mmbind first, without the pinned
    variables of this one (``extra``: the user's own)."""
    env = {k: v for k, v in os.environ.items() if k not in PINNED} | extra
    out = subprocess.run(
        [sys.executable, "-c", f"import mmbind\n{code}"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return out.stdout.strip()


def _capability(**extra: str) -> str:
    return _after_import("import torch; print(torch.backends.cpu.get_cpu_capability())", **extra)


@pytest.mark.skipif(not cpu_has_avx2(), reason="this processor is not x86-64 with AVX2")
def test_importing_mmbind_gives_torch_the_avx2_kernels_unless_told_otherwise() -> None:
    assert _capability() == "AVX2"
    assert _capability(ATEN_CPU_CAPABILITY="default") == "DEFAULT"


def _openblas(**extra: str) -> list[str]:
    """The kernels numpy's and SciPy's OpenBLAS chose."""
    code = (
        "import numpy, scipy.linalg, threadpoolctl\n"
        "print(' '.join(sorted({i.get('architecture', '?') for i in "
        "threadpoolctl.threadpool_info() if i['internal_api'] == 'openblas'})))"
    )
    return _after_import(code, **extra).split()


@pytest.mark.skipif(not cpu_has_avx2(), reason="this processor is not x86-64 with AVX2")
def test_importing_mmbind_first_gives_numpy_and_scipy_the_haswell_kernels() -> None:
    # (an AVX-512 machine's OpenBLAS picks SkylakeX otherwise, and MMBind's UTD-MHAD figures
    # moved by 3 points with it)
    assert _openblas() == ["Haswell"]
    assert _openblas(OPENBLAS_CORETYPE="Sandybridge") == ["Sandybridge"]


def _numpy_avx512(**extra: str) -> bool:
    """Whether numpy dispatches its AVX-512 loops."""
    code = (
        "from numpy._core._multiarray_umath import __cpu_features__ as f\n"
        "print(bool(f.get('X86_V4') or f.get('AVX512_ICL')))"
    )
    return _after_import(code, **extra) == "True"


@pytest.mark.skipif(not cpu_has_avx2(), reason="this processor is not x86-64 with AVX2")
def test_importing_mmbind_first_keeps_numpy_on_its_avx2_loops() -> None:
    # (its AVX-512 float64 exp rounds differently; an AVX2 processor never has them)
    assert _numpy_avx512() is False
    has_avx512 = "avx512f" in Path("/proc/cpuinfo").read_text()
    assert _numpy_avx512(NPY_DISABLE_CPU_FEATURES="") is has_avx512
