"""Fixtures of the deployment tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy_harness import Deployment


@pytest.fixture
def deployment(tmp_path: Path, redis_url: str) -> Iterator[Deployment]:
    """A deployment's processes on loopback (skips when the test Redis does not answer)."""
    dep = Deployment(tmp_path, redis_url)
    try:
        yield dep
    finally:
        dep.close()
