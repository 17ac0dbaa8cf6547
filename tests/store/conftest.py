"""Fixtures of the store tests: the stores the contract suite runs against.

Redis comes from the shared ``redis_client``/``redis_url`` fixtures (tests/conftest.py);
tests that need it skip when it does not answer. Each test gets its own key prefix,
so concurrent test runs on the same database do not see each other, and its keys
are removed afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from mmbind.server.grpc_service import BindingServer, serve
from mmbind.server.redis_store import RedisBindingStore
from mmbind.server.remote import RemoteBindingStore
from mmbind.server.store import BindingStore, InMemoryBindingStore


@pytest.fixture
def redis_store(redis_client: redis.Redis, redis_url: str) -> Iterator[RedisBindingStore]:
    """A Redis store with a fresh key prefix and short TTLs, cleaned up afterwards."""
    prefix = f"mmbind-test-{uuid.uuid4().hex[:12]}"
    store = RedisBindingStore(
        redis_url, ttl_seconds=100, checkpoint_ttl_seconds=1000, retries=1, backoff=0.01,
        prefix=prefix,
    )  # fmt: skip
    yield store
    for key in redis_client.scan_iter(match=f"{prefix}:*", count=1000):
        redis_client.delete(key)
    store.close()


@pytest.fixture(scope="module")
def remote_server() -> Iterator[BindingServer]:
    """A BindingService on 127.0.0.1 over an in-memory store, shared by a module's tests."""
    with serve("127.0.0.1", 0, InMemoryBindingStore(), max_workers=4) as server:
        yield server


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.integration),
        pytest.param("remote", marks=pytest.mark.integration),
    ]
)
def store(request: pytest.FixtureRequest) -> Iterator[BindingStore]:
    """Each store implementation in turn: in-process, Redis, and remote over gRPC."""
    if request.param == "memory":
        yield InMemoryBindingStore()
    elif request.param == "redis":
        yield request.getfixturevalue("redis_store")
    else:
        server: BindingServer = request.getfixturevalue("remote_server")
        with RemoteBindingStore(server.address, timeout=10, retries=0) as remote:
            yield remote


@pytest.fixture
def run_id() -> str:
    """A run id no other test uses (stores may be shared within a module)."""
    return f"run-{uuid.uuid4().hex[:10]}"
