"""What only the Redis store does: key layout, TTLs, segments, errors of a Redis that is down."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest
import redis

from mmbind.errors import ConfigError, ShapeError, StoreError
from mmbind.server import redis_store as redis_store_module
from mmbind.server.binding_service import NodeManifest
from mmbind.server.redis_store import RedisBindingStore, check_redis_url, redact_url


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def _manifest(node_id: int) -> dict[str, object]:
    return NodeManifest(node_id, "A", ("acc",), 4, False, True, 3).to_dict()


@pytest.mark.integration
def test_keys_are_namespaced_and_transient_state_expires(
    redis_store: RedisBindingStore, redis_client: redis.Redis
) -> None:
    store, run = redis_store, "r1"
    store.put_manifest(run, 1, _manifest(1))
    store.put_arrays(run, 1, "embeddings", {"embeddings": np.zeros((4, 2), np.float32)})
    store.append_event(run, {"kind": "start"})
    store.incr(run, "uploads")
    store.add_traffic(run, 1, 5, 5)
    store.put_checkpoint(run, {"round": 1})
    store.put_blob(run, "model", b"weights")
    store.put_results(run, {"acc": 0.5})
    keys = {k.decode() for k in redis_client.scan_iter(match=f"{store.prefix}:*")}
    base = f"{store.prefix}:{{{run}}}:"
    transient = {base + s for s in ("manifests", "arrays:1:embeddings", "events", "counters",
                                    "traffic")}  # fmt: skip
    durable = {base + s for s in ("checkpoint", "blobs", "results")}
    assert keys == transient | durable
    for key in transient:
        assert 0 < redis_client.ttl(key) <= store.ttl_seconds, key
    for key in durable:
        assert store.ttl_seconds < redis_client.ttl(key) <= store.checkpoint_ttl_seconds, key


@pytest.mark.integration
def test_large_arrays_span_segments(
    redis_store: RedisBindingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_store_module, "SEGMENT_BYTES", 1000)
    redis_store.put_manifest("r", 1, _manifest(1))
    a = np.random.default_rng(0).standard_normal((50, 33)).astype(np.float32)  # 6600 bytes
    redis_store.put_arrays("r", 1, "x", {"a": a, "b": np.arange(3)})
    back = redis_store.arrays("r", 1, "x")
    np.testing.assert_array_equal(back["a"], a)
    np.testing.assert_array_equal(back["b"], np.arange(3))


@pytest.mark.integration
def test_unsupported_dtype_is_refused_before_writing(redis_store: RedisBindingStore) -> None:
    redis_store.put_manifest("r", 1, _manifest(1))
    with pytest.raises(ShapeError, match="unsupported dtype"):
        redis_store.put_arrays("r", 1, "x", {"s": np.array(["text"])})


@pytest.mark.integration
def test_inconsistent_arrays_are_a_store_error(
    redis_store: RedisBindingStore, redis_client: redis.Redis
) -> None:
    redis_store.put_manifest("r", 1, _manifest(1))
    redis_store.put_arrays("r", 1, "x", {"a": np.zeros(4)})
    key = f"{redis_store.prefix}:{{r}}:arrays:1:x"
    redis_client.hset(key, "d:a:0", b"short")
    with pytest.raises(StoreError, match="inconsistent"):
        redis_store.arrays("r", 1, "x")
    redis_client.hset(key, "meta", b"{not json")
    with pytest.raises(StoreError, match="invalid JSON"):
        redis_store.arrays("r", 1, "x")


def test_redis_down_is_a_store_error_after_retries() -> None:
    url = f"redis://:hunter2@127.0.0.1:{closed_port()}/0"
    store = RedisBindingStore(url, retries=3, backoff=0.01, socket_timeout=1.0)
    start = time.monotonic()
    with pytest.raises(StoreError) as info:
        store.manifests("r")
    elapsed = time.monotonic() - start
    message = str(info.value)
    assert "unreachable" in message and "after 4 attempts" in message
    assert "reading the manifests of run 'r'" in message
    assert f"127.0.0.1:{url.rsplit(':', 1)[1].split('/')[0]}" in message
    assert "hunter2" not in message  # the password is redacted
    assert 0.07 <= elapsed < 3.0  # 0.01 + 0.02 + 0.04 of backoff, then gives up


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:6379", "127.0.0.1:6379", "", "redis+sentinel://h:1", "mysql://x"]
)
def test_bad_url_scheme_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="invalid Redis URL"):
        RedisBindingStore(url)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://127.0.0.1:6379/abc", "the database 'abc' must be a number"),
        ("redis://:pw@127.0.0.1:6379/-1", "redis://:\\*\\*\\*@127.0.0.1:6379/-1'.*'-1' must be"),
        ("redis://127.0.0.1:6379/1/2", "the database '1/2'"),
        ("redis://127.0.0.1:6379/0?db=x", "the database 'x'"),
        ("unix:///run/redis.sock?db=one", "the database 'one'"),
        ("redis://127.0.0.1:port/0", "Port could not be cast"),
    ],
)
def test_a_database_that_is_not_a_number_is_a_config_error(url: str, message: str) -> None:
    # redis-py alone reads redis://host/abc as database 0, without a word
    with pytest.raises(ConfigError, match=message):
        RedisBindingStore(url)


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/15", "redis://h", "rediss://h:1/", "unix:///r.sock?db=2"]
)
def test_good_urls_are_accepted(url: str) -> None:
    check_redis_url(url)


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="TTL"):
        RedisBindingStore("redis://127.0.0.1:6379/15", ttl_seconds=0)
    with pytest.raises(ConfigError, match="retries"):
        RedisBindingStore.from_url("redis://127.0.0.1:6379/15", retries=-1)


def test_redact_url() -> None:
    assert redact_url("redis://:pw@host:1/0") == "redis://:***@host:1/0"
    assert redact_url("redis://user:pw@host/0") == "redis://user:***@host/0"
    assert redact_url("redis://host:1/0") == "redis://host:1/0"
