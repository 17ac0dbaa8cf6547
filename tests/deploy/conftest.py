"""Fixtures of the deployment tests.

Stress variant: ``MMBIND_STRESS=N python -m pytest tests/deploy`` runs every test here
beside N busy-looping processes (started before the test, killed after it), so the
deployment is tested on a machine with no idle core. The tests must pass this way too:
their grace periods and timeouts are configuration, not luck.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy_harness import Deployment

from mmbind.errors import ConfigError

STRESS_ENV = "MMBIND_STRESS"
HOG = "while True:\n    pass\n"


def stress_processes() -> int:
    """How many CPU hogs ``MMBIND_STRESS`` asks for (0 when unset)."""
    text = os.environ.get(STRESS_ENV, "").strip() or "0"
    if not text.isdigit():
        raise ConfigError(f"{STRESS_ENV}={text!r} must be a number of busy processes, e.g. 2")
    return int(text)


@pytest.fixture(autouse=True)
def cpu_hogs() -> Iterator[list[subprocess.Popen[bytes]]]:
    """The busy processes of the stress variant (none unless ``MMBIND_STRESS`` is set)."""
    hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(stress_processes())]
    try:
        yield hogs
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


@pytest.fixture
def deployment(tmp_path: Path, redis_url: str) -> Iterator[Deployment]:
    """A secure deployment's processes on loopback (skips when the test Redis does not answer)."""
    dep = Deployment(tmp_path, redis_url)
    try:
        yield dep
    finally:
        dep.close()


@pytest.fixture
def insecure_deployment(tmp_path: Path, redis_url: str) -> Iterator[Deployment]:
    """The zero-configuration loopback deployment: no certificates, plaintext."""
    dep = Deployment(tmp_path, redis_url, secure=False)
    try:
        yield dep
    finally:
        dep.close()
