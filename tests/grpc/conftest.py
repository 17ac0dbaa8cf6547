"""Fixtures of the gRPC tests: real BindingService servers on 127.0.0.1 over each store.

Redis is the one at ``MMBIND_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/15``);
Redis-backed cases skip when it does not answer. Each module's Redis server uses its
own key prefix, removed afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis

from mmbind.server.grpc_service import BindingServer, serve
from mmbind.server.redis_store import RedisBindingStore
from mmbind.server.store import BindingStore, InMemoryBindingStore

REDIS_URL = os.environ.get("MMBIND_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def redis_or_skip() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(
            f"Redis at {REDIS_URL} does not answer ({exc}); start one or set MMBIND_TEST_REDIS_URL"
        )
    return client


@pytest.fixture(scope="module", params=["memory", "redis"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def backing_store(store_kind: str) -> Iterator[BindingStore]:
    """The store behind the module's server: in-memory or Redis (fresh key prefix)."""
    if store_kind == "memory":
        yield InMemoryBindingStore()
        return
    client = redis_or_skip()
    prefix = f"mmbind-test-{uuid.uuid4().hex[:12]}"
    store = RedisBindingStore(REDIS_URL, retries=1, backoff=0.01, prefix=prefix)
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
