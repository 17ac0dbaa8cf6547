"""Fixtures of the gRPC tests: real BindingService servers on 127.0.0.1 over each store.

Redis-backed cases use the shared ``redis_client`` fixture (tests/conftest.py) and skip when
it does not answer. Each module's Redis server uses its own key prefix, removed afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from mmbind.server.grpc_service import BindingServer, serve
from mmbind.server.redis_store import RedisBindingStore
from mmbind.server.store import BindingStore, InMemoryBindingStore


@pytest.fixture(scope="module", params=["memory", "redis"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def backing_store(store_kind: str, request: pytest.FixtureRequest) -> Iterator[BindingStore]:
    """The store behind the module's server: in-memory or Redis (fresh key prefix)."""
    if store_kind == "memory":
        yield InMemoryBindingStore()
        return
    client: redis.Redis = request.getfixturevalue("redis_client")
    prefix = f"mmbind-test-{uuid.uuid4().hex[:12]}"
    store = RedisBindingStore(
        request.getfixturevalue("redis_url"), retries=1, backoff=0.01, prefix=prefix
    )
    yield store
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        client.delete(key)
    store.close()


@pytest.fixture(scope="module")
def server(backing_store: BindingStore) -> Iterator[BindingServer]:
    """A started BindingService on 127.0.0.1 (free port) over ``backing_store``."""
    with serve("127.0.0.1", 0, backing_store, max_workers=6, poll_interval=0.05) as srv:
        yield srv


@pytest.fixture
def run_id() -> str:
    return f"run-{uuid.uuid4().hex[:10]}"
