"""A :class:`~mmbind.server.store.BindingStore` kept in Redis.

Every key of a run lives under ``mmbind:{<run_id>}:`` (the braces are Redis
Cluster's hash tag, so a run's keys share one slot):

==============================  ======  ====================================  ==========
key                             type    content                               TTL
==============================  ======  ====================================  ==========
``manifests``                   hash    node id -> manifest JSON              transient
``arrays:<node>:<name>``        hash    ``meta`` JSON + raw bytes segments    transient
``events``                      list    event JSON; seq = position + 1        transient
``counters`` / ``traffic``      hash    integer counters                      transient
``checkpoint`` / ``results``    string  JSON document                         checkpoint
``blobs``                       hash    blob name -> bytes                    checkpoint
==============================  ======  ====================================  ==========

Transient keys expire ``ttl_seconds`` after their last write, checkpoints,
blobs and results ``checkpoint_ttl_seconds`` after theirs. Arrays are raw
little-endian bytes (cut in segments of at most 64 MiB, under Redis's 512 MiB
string cap) with their dtype and shape in ``meta``; an array set is written
under a temporary key and renamed into place, so readers never see half of one.

A Redis that does not answer is retried ``retries`` times with exponential
backoff, then reported as a :class:`~mmbind.errors.StoreError` that names the
URL (without its password) and the operation. Writes that reach Redis but
whose reply is lost may be applied twice on retry (events, counters).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

import redis
from numpy.typing import NDArray
from redis.backoff import NoBackoff
from redis.retry import Retry

from mmbind.errors import ConfigError, MMBindError, StoreError, UnknownNodeError
from mmbind.server.array_codec import array_from_bytes, array_to_bytes
from mmbind.server.store import Event, NodeTraffic, json_copy

log = logging.getLogger(__name__)

T = TypeVar("T")

SCHEMES = ("redis", "rediss", "unix")
"""URL schemes Redis accepts."""
SEGMENT_BYTES = 64 << 20
"""Largest piece of an array kept in one hash field."""
_GLOB_SPECIAL = "\\*?[]"


def redact_url(url: str) -> str:
    """``url`` without its password (safe to put in messages and logs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<malformed url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    netloc = f"{user}:***@{host}{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def check_redis_url(url: str) -> None:
    """Refuse a Redis URL that redis-py would misread or reject.

    redis-py reads ``redis://host:6379/abc`` as database 0 without a word; here the
    scheme must be ``redis``, ``rediss`` or ``unix`` and the database (the path of a
    ``redis://`` URL, or ``?db=N``) a number.

    Raises
    ------
    ConfigError
        The message names the URL (without its password) and what would be valid.
    """
    safe = redact_url(url)
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in SCHEMES:
        raise ConfigError(
            f"invalid Redis URL {safe!r}: the scheme must be one of "
            f"{', '.join(s + '://' for s in SCHEMES)}"
        )
    try:
        parts = urlsplit(url)
        _ = parts.port  # a port that is not a number raises ValueError
    except ValueError as exc:
        raise ConfigError(f"invalid Redis URL {safe!r}: {exc}") from None
    databases = [] if scheme == "unix" else [unquote(parts.path).strip("/") or "0"]
    databases += parse_qs(parts.query).get("db", [])
    for db in databases:
        if not db.isdigit():
            raise ConfigError(
                f"invalid Redis URL {safe!r}: the database {db!r} must be a number >= 0, "
                "e.g. redis://127.0.0.1:6379/0 or unix:///run/redis.sock?db=0"
            )


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in _GLOB_SPECIAL else c for c in text)


class RedisBindingStore:
    """Binding state of runs in Redis (implements :class:`~mmbind.server.store.BindingStore`).

    Parameters
    ----------
    url : str
        ``redis://[:password@]host:port/db``, ``rediss://...`` (TLS) or ``unix:///path``.
    ttl_seconds : int
        Lifetime of transient state (manifests, arrays, events, telemetry) after its last write.
    checkpoint_ttl_seconds : int
        Lifetime of checkpoints, blobs and results after their last write.
    retries : int
        Retries of an operation when Redis does not answer (connection refused, timeout).
    backoff : float
        First wait between retries in seconds; doubled each retry.
    socket_timeout : float
        Seconds to wait for a connection or a reply before counting an attempt as failed.
    prefix : str
        First part of every key.
    password : str, optional
        The Redis password (of the URL's user, an ACL user, or ``default``), kept out of
        the URL so that it appears in no message, log or process argument.

    Raises
    ------
    ConfigError
        A URL that Redis does not accept, or a non-positive TTL / negative retry setting.
        Nothing is connected until the first operation.
    """

    def __init__(
        self,
        url: str,
        *,
        ttl_seconds: int = 86_400,
        checkpoint_ttl_seconds: int = 7 * 86_400,
        retries: int = 5,
        backoff: float = 0.2,
        socket_timeout: float = 5.0,
        prefix: str = "mmbind",
        password: str | None = None,
    ) -> None:
        check_redis_url(url)
        if ttl_seconds <= 0 or checkpoint_ttl_seconds <= 0:
            raise ConfigError(
                f"Redis TTLs must be positive; got ttl_seconds={ttl_seconds}, "
                f"checkpoint_ttl_seconds={checkpoint_ttl_seconds}"
            )
        if retries < 0 or backoff < 0 or socket_timeout <= 0:
            raise ConfigError(
                f"retries and backoff must be >= 0 and socket_timeout > 0; got retries={retries}, "
                f"backoff={backoff}, socket_timeout={socket_timeout}"
            )
        self.url = url
        self.safe_url = redact_url(url)
        self.ttl_seconds = int(ttl_seconds)
        self.checkpoint_ttl_seconds = int(checkpoint_ttl_seconds)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.prefix = prefix
        try:
            self._redis = redis.Redis.from_url(
                url,
                retry=Retry(NoBackoff(), 0),  # this class retries, with its own backoff
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_timeout,
                **({"password": password} if password else {}),
            )
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"invalid Redis URL {self.safe_url!r}: {exc}") from None

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisBindingStore:
        """Same as the constructor (for symmetry with ``redis.Redis.from_url``)."""
        return cls(url, **options)

    def __repr__(self) -> str:
        return f"RedisBindingStore({self.safe_url!r})"

    def close(self) -> None:
        """Close the connection pool."""
        self._redis.close()

    # ---------------------------------------------------------------- plumbing
    def _key(self, run_id: str, *parts: str) -> str:
        return ":".join((self.prefix, "{" + run_id + "}", *parts))

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                last = exc
                if attempt < self.retries:
                    delay = self.backoff * 2**attempt
                    log.warning(
                        "Redis at %s did not answer (%s); retry %d/%d in %.2fs",
                        self.safe_url,
                        exc,
                        attempt + 1,
                        self.retries,
                        delay,
                    )
                    time.sleep(delay)
            except redis.RedisError as exc:
                raise StoreError(f"Redis at {self.safe_url}: {what} failed: {exc}") from exc
        raise StoreError(
            f"Redis at {self.safe_url} is unreachable: {what} failed after "
            f"{self.retries + 1} attempts: {last}"
        ) from last

    def _json(self, raw: bytes | str, what: str) -> dict[str, Any]:
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            raise StoreError(
                f"Redis at {self.safe_url} holds invalid JSON for {what}: {exc}"
            ) from exc
        if not isinstance(doc, dict):
            raise StoreError(f"Redis at {self.safe_url} holds a non-object for {what}")
        return doc

    @staticmethod
    def _dump(document: Mapping[str, Any], what: str) -> str:
        return json.dumps(json_copy(document, what))

    def ping(self) -> None:
        """Check that Redis answers; :class:`StoreError` if it does not."""
        self._call("PING", self._redis.ping)

    # --------------------------------------------------------------- manifests
    def put_manifest(self, run_id: str, node_id: int, manifest: Mapping[str, Any]) -> None:
        key = self._key(run_id, "manifests")
        text = self._dump(manifest, f"manifest of node {node_id}")

        def op() -> None:
            pipe = self._redis.pipeline()
            pipe.hset(key, str(node_id), text)
            pipe.expire(key, self.ttl_seconds)
            pipe.execute()

        self._call(f"storing the manifest of node {node_id} in run {run_id!r}", op)

    def manifests(self, run_id: str) -> dict[int, dict[str, Any]]:
        key = self._key(run_id, "manifests")
        raw: dict[bytes | str, bytes | str] = self._call(
            f"reading the manifests of run {run_id!r}", lambda: self._redis.hgetall(key)
        )
        return {int(k): self._json(v, f"manifest of node {_str(k)}") for k, v in raw.items()}

    # ------------------------------------------------------------------ arrays
    def _arrays_key(self, run_id: str, node_id: int, name: str) -> str:
        return self._key(run_id, "arrays", str(node_id), name)

    def put_arrays(
        self, run_id: str, node_id: int, name: str, arrays: Mapping[str, NDArray[Any]]
    ) -> None:
        encoded = {k: array_to_bytes(v, k) for k, v in arrays.items()}  # ShapeError first
        manifests = self._key(run_id, "manifests")
        known = self._call(
            f"checking node {node_id} of run {run_id!r}",
            lambda: self._redis.hexists(manifests, str(node_id)),
        )
        if not known:
            raise UnknownNodeError(
                f"node {node_id} has no manifest in run {run_id!r}; register it first"
            )
        final = self._arrays_key(run_id, node_id, name)
        tmp = f"{final}:tmp:{uuid.uuid4().hex}"
        meta: list[dict[str, Any]] = []
        for k, (dtype, shape, data) in encoded.items():
            segments = max(1, -(-len(data) // SEGMENT_BYTES))
            meta.append(
                {"key": k, "dtype": dtype, "shape": list(shape), "nbytes": len(data),
                 "segments": segments}
            )  # fmt: skip

        def op() -> None:
            pipe = self._redis.pipeline(transaction=False)
            pipe.delete(tmp)
            pipe.hset(tmp, "meta", json.dumps({"arrays": meta}))
            pipe.expire(tmp, self.ttl_seconds)
            for k, (_dtype, _shape, data) in encoded.items():
                view = memoryview(data)
                for i in range(max(1, -(-len(data) // SEGMENT_BYTES))):
                    segment = view[i * SEGMENT_BYTES : (i + 1) * SEGMENT_BYTES]
                    pipe.hset(tmp, f"d:{k}:{i}", segment)
            pipe.execute()
            swap = self._redis.pipeline(transaction=True)
            swap.rename(tmp, final)
            swap.expire(final, self.ttl_seconds)
            swap.execute()

        total = sum(len(d) for _, _, d in encoded.values())
        self._call(f"storing {name!r} arrays ({total} bytes) of node {node_id}", op)

    def arrays(self, run_id: str, node_id: int, name: str) -> dict[str, NDArray[Any]]:
        key = self._arrays_key(run_id, node_id, name)
        fetched: dict[bytes | str, bytes | str] = self._call(
            f"reading {name!r} arrays of node {node_id}", lambda: self._redis.hgetall(key)
        )
        raw = {_bytes(k): _bytes(v) for k, v in fetched.items()}
        if not raw:
            raise StoreError(f"no {name!r} arrays stored for node {node_id} in run {run_id!r}")
        what = f"{name!r} arrays of node {node_id} in run {run_id!r}"
        if b"meta" not in raw:
            raise StoreError(f"Redis at {self.safe_url} holds {what} without metadata")
        out: dict[str, NDArray[Any]] = {}
        try:
            for entry in self._json(raw[b"meta"], what)["arrays"]:
                k = str(entry["key"])
                parts = [raw[f"d:{k}:{i}".encode()] for i in range(int(entry["segments"]))]
                out[k] = array_from_bytes(entry["dtype"], entry["shape"], b"".join(parts), k)
        except (KeyError, TypeError, ValueError, MMBindError) as exc:
            raise StoreError(f"Redis at {self.safe_url} holds inconsistent {what}: {exc}") from exc
        return out

    # ------------------------------------------------------------- checkpoints
    def put_checkpoint(self, run_id: str, checkpoint: Mapping[str, Any]) -> None:
        key = self._key(run_id, "checkpoint")
        text = self._dump(checkpoint, f"checkpoint of run {run_id!r}")
        self._call(
            f"storing the checkpoint of run {run_id!r}",
            lambda: self._redis.set(key, text, ex=self.checkpoint_ttl_seconds),
        )

    def checkpoint(self, run_id: str) -> dict[str, Any] | None:
        key = self._key(run_id, "checkpoint")
        raw = self._call(f"reading the checkpoint of run {run_id!r}", lambda: self._redis.get(key))
        return None if raw is None else self._json(raw, f"checkpoint of run {run_id!r}")

    def put_blob(self, run_id: str, name: str, data: bytes) -> None:
        key = self._key(run_id, "blobs")

        def op() -> None:
            pipe = self._redis.pipeline()
            pipe.hset(key, name, bytes(data))
            pipe.expire(key, self.checkpoint_ttl_seconds)
            pipe.execute()

        self._call(f"storing blob {name!r} ({len(data)} bytes) of run {run_id!r}", op)

    def blob(self, run_id: str, name: str) -> bytes | None:
        key = self._key(run_id, "blobs")
        raw: bytes | str | None = self._call(
            f"reading blob {name!r} of run {run_id!r}", lambda: self._redis.hget(key, name)
        )
        return None if raw is None else _bytes(raw)

    def blob_names(self, run_id: str) -> list[str]:
        key = self._key(run_id, "blobs")
        names: list[bytes | str] = self._call(
            f"listing the blobs of run {run_id!r}", lambda: self._redis.hkeys(key)
        )
        return sorted(_str(n) for n in names)

    def runs(self) -> list[str]:
        head = f"{self.prefix}:{{"
        tail = "}:checkpoint"
        pattern = f"{_glob_escape(head)}*{_glob_escape(tail)}"

        def op() -> list[str]:
            keys = (_str(k) for k in self._redis.scan_iter(match=pattern, count=1000))
            return sorted(k[len(head) : -len(tail)] for k in keys)

        return self._call("listing runs", op)

    # ---------------------------------------------------------- events, results
    def append_event(self, run_id: str, event: Mapping[str, Any]) -> int:
        key = self._key(run_id, "events")
        text = self._dump(event, f"event of run {run_id!r}")

        def op() -> int:
            pipe = self._redis.pipeline()
            pipe.rpush(key, text)
            pipe.expire(key, self.ttl_seconds)
            length, _ = pipe.execute()
            return int(length)

        return self._call(f"appending an event to run {run_id!r}", op)

    def events(self, run_id: str, after_seq: int = 0) -> list[Event]:
        key = self._key(run_id, "events")
        start = max(int(after_seq), 0)
        raw: list[bytes | str] = self._call(
            f"reading the events of run {run_id!r}", lambda: self._redis.lrange(key, start, -1)
        )
        return [
            Event(start + 1 + i, self._json(text, f"event {start + 1 + i} of run {run_id!r}"))
            for i, text in enumerate(raw)
        ]

    def put_results(self, run_id: str, results: Mapping[str, Any]) -> None:
        key = self._key(run_id, "results")
        text = self._dump(results, f"results of run {run_id!r}")
        self._call(
            f"storing the results of run {run_id!r}",
            lambda: self._redis.set(key, text, ex=self.checkpoint_ttl_seconds),
        )

    def results(self, run_id: str) -> dict[str, Any] | None:
        key = self._key(run_id, "results")
        raw = self._call(f"reading the results of run {run_id!r}", lambda: self._redis.get(key))
        return None if raw is None else self._json(raw, f"results of run {run_id!r}")

    # --------------------------------------------------------------- telemetry
    def add_traffic(self, run_id: str, node_id: int, received: int = 0, sent: int = 0) -> None:
        key = self._key(run_id, "traffic")

        def op() -> None:
            pipe = self._redis.pipeline()
            pipe.hincrby(key, f"{node_id}:received", int(received))
            pipe.hincrby(key, f"{node_id}:sent", int(sent))
            pipe.expire(key, self.ttl_seconds)
            pipe.execute()

        self._call(f"counting traffic of node {node_id} in run {run_id!r}", op)

    def traffic(self, run_id: str) -> dict[int, NodeTraffic]:
        key = self._key(run_id, "traffic")
        raw: dict[bytes | str, bytes | str] = self._call(
            f"reading the traffic of run {run_id!r}", lambda: self._redis.hgetall(key)
        )
        totals: dict[int, list[int]] = {}
        for field, value in raw.items():
            node, _, direction = _str(field).rpartition(":")
            slot = totals.setdefault(int(node), [0, 0])
            slot[0 if direction == "received" else 1] = int(value)
        return {n: NodeTraffic(r, s) for n, (r, s) in sorted(totals.items())}

    def incr(self, run_id: str, counter: str, amount: int = 1) -> int:
        key = self._key(run_id, "counters")

        def op() -> int:
            pipe = self._redis.pipeline()
            pipe.hincrby(key, counter, int(amount))
            pipe.expire(key, self.ttl_seconds)
            value, _ = pipe.execute()
            return int(value)

        return self._call(f"counting {counter!r} in run {run_id!r}", op)

    def counters(self, run_id: str) -> dict[str, int]:
        key = self._key(run_id, "counters")
        raw: dict[bytes | str, bytes | str] = self._call(
            f"reading the counters of run {run_id!r}", lambda: self._redis.hgetall(key)
        )
        return {_str(k): int(v) for k, v in raw.items()}

    # ------------------------------------------------------------------ delete
    def delete_run(self, run_id: str) -> None:
        pattern = _glob_escape(self._key(run_id, "")) + "*"

        def op() -> None:
            batch: list[bytes | str] = []
            for key in self._redis.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    self._redis.unlink(*batch)
                    batch.clear()
            if batch:
                self._redis.unlink(*batch)

        self._call(f"deleting run {run_id!r}", op)
