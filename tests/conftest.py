"""Fixtures shared by every test package.

Redis is the one at ``MMBIND_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/15``);
tests that need it request ``redis_url`` or ``redis_client`` and skip when it does not answer.
Under pytest-xdist each worker takes its own database, counting down from that one (``gw0``:
15, ``gw1``: 14, ...), so that workers never see each other's keys.
"""

from __future__ import annotations

import mmbind  # noqa: F401  # isort: skip  (first: pins the CPU kernels before numpy loads)
import os
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
import torch


def _worker_redis_url(url: str, worker: str | None) -> str:
    """``url`` with its database number lowered by the xdist worker's index (``gwN``)."""
    if not worker or not worker.startswith("gw"):
        return url
    parts = urlsplit(url)
    db = int(parts.path.lstrip("/") or 0) - int(worker[2:])
    if db < 0:
        raise pytest.UsageError(f"{url}: too few Redis databases below it for worker {worker}")
    return urlunsplit(parts._replace(path=f"/{db}"))


TEST_REDIS_URL = _worker_redis_url(
    os.environ.get("MMBIND_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
    os.environ.get("PYTEST_XDIST_WORKER"),
)


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Run a test on one torch thread (small ops; avoids oversubscribing a shared 2-core box)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def redis_client() -> Iterator[redis.Redis]:
    """A client of the test database; skips the test when Redis does not answer."""
    client = redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=0.5, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(
            f"Redis at {TEST_REDIS_URL} does not answer ({exc}); "
            "start one or set MMBIND_TEST_REDIS_URL"
        )
    yield client
    client.close()


@pytest.fixture(scope="session")
def redis_url(redis_client: redis.Redis) -> str:
    """The test Redis URL, once it answers (skips otherwise)."""
    return TEST_REDIS_URL


@pytest.fixture(autouse=True)
def builtin_modalities() -> Iterator[None]:
    """Every test starts and ends with the built-in modality registry (a data set folder's
    modalities, registered by a test, do not leak into the next)."""
    from mmbind.modalities import use_modalities

    use_modalities(())
    yield
    use_modalities(())
