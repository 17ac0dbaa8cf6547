"""Fixtures of the deployment tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy_harness import REDIS_URL, Deployment, redis_answers


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    if not redis_answers():
        pytest.skip(f"Redis does not answer at {REDIS_URL} (start redis-server)")
    dep = Deployment(tmp_path)
    try:
        yield dep
    finally:
        dep.close()
