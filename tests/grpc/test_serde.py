"""Round trips and validation of the gRPC edge codecs (mmbind.server.serde)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mmbind.binding.pairing import Bindings
from mmbind.errors import ConfigError, ShapeError
from mmbind.protos.v1 import binding_pb2 as pb
from mmbind.server import serde
from mmbind.server.binding_service import BindRequest, NodeManifest
from mmbind.server.store import Event

WIRE_DTYPES = [np.dtype(n) for n in serde.DTYPES]
KEY = serde.ArraysKey("run", 42, "embeddings")

arrays_st = st.dictionaries(
    st.text(min_size=1, max_size=8),
    st.sampled_from(WIRE_DTYPES).flatmap(
        lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6))
    ),
    max_size=4,
)


def assert_same(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes()  # bitwise: NaNs and -0.0 survive too


@settings(max_examples=60, deadline=None)
@given(arrays=arrays_st, chunk=st.integers(1, 64))
def test_arrays_round_trip_through_chunks(arrays: dict[str, Any], chunk: int) -> None:
    chunks = list(serde.arrays_to_chunks(KEY, arrays, chunk_bytes=chunk))
    assert all(len(c.data) <= chunk for c in chunks if c.WhichOneof("part") == "data")
    key, back = serde.chunks_to_arrays(
        pb.ArrayChunk.FromString(c.SerializeToString()) for c in chunks
    )
    assert key == KEY
    assert list(back) == list(arrays)
    for k in arrays:
        assert_same(back[k], arrays[k])


def test_non_contiguous_and_big_endian_arrays_travel_as_little_endian() -> None:
    a = np.arange(24, dtype=">f4").reshape(4, 6)[:, ::2]
    _, back = serde.chunks_to_arrays(serde.arrays_to_chunks(KEY, {"a": a}, chunk_bytes=5))
    np.testing.assert_array_equal(back["a"], a)
    assert back["a"].dtype == np.float32 and back["a"].dtype.isnative
    assert serde.array_to_bytes(np.array([1.0], ">f8"))[2] == np.array([1.0], "<f8").tobytes()


def test_chunks_carry_at_most_one_mib_by_default() -> None:
    a = np.zeros((3 * serde.CHUNK_BYTES + 5) // 4, np.float32)
    chunks = list(serde.arrays_to_chunks(KEY, {"a": a}))
    data = [c.data for c in chunks if c.WhichOneof("part") == "data"]
    assert len(data) == 4 and max(len(d) for d in data) == serde.CHUNK_BYTES

    with pytest.raises(ShapeError, match="0 and 1"):
        serde.array_from_bytes("bool", (2,), b"\x00\x02")


def _header() -> pb.ArrayChunk:
    return pb.ArrayChunk(header=pb.ArraysHeader(run_id="r", node_id=1, name="x"))


def _array(key: str = "a", dtype: str = "float32", shape: tuple[int, ...] = (2,)) -> pb.ArrayChunk:
    return pb.ArrayChunk(array=pb.ArrayHeader(key=key, dtype=dtype, shape=shape))


def _data(n: int) -> pb.ArrayChunk:
    return pb.ArrayChunk(data=b"\x00" * n)


@pytest.mark.parametrize(
    ("chunks", "error", "match"),
    [
        ([], ConfigError, "empty array stream"),
        ([_array()], ConfigError, "must start with its header"),
        ([_header(), _data(8)], ConfigError, "before any array header"),
        ([_header(), _header()], ConfigError, "single header"),
        ([_header(), _array(), _data(8), _array()], ConfigError, "appears twice"),
        ([_header(), _array(), _data(7)], ShapeError, "declared 8 bytes; the stream carried 7"),
        ([_header(), _array(), _data(4), _array("b")], ShapeError, "carried 4"),
        ([_header(), _array(), _data(9)], ShapeError, "carried more"),
        ([_header(), _array(dtype="int8")], ShapeError, "unsupported dtype 'int8'"),
        ([_header(), _array(shape=(2**31,))], ShapeError, "over the limit of 4294967296"),
        ([_header(), pb.ArrayChunk()], ConfigError, "carries nothing"),
    ],
)
def test_malformed_array_streams(chunks: list[pb.ArrayChunk], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        serde.chunks_to_arrays(chunks)


def test_on_header_sees_the_key_before_the_data() -> None:
    seen: list[serde.ArraysKey] = []

    def stream() -> Any:
        yield _header()
        assert seen == [serde.ArraysKey("r", 1, "x")]
        yield _array()
        yield _data(8)

    serde.chunks_to_arrays(stream(), on_header=seen.append)


manifest_st = st.builds(
    NodeManifest,
    node_id=st.integers(0, 2**64 - 1),
    role=st.text(max_size=5),
    modalities=st.lists(st.text(min_size=1, max_size=6), max_size=4).map(tuple),
    num_samples=st.integers(0, 2**40),
    labelled=st.booleans(),
    trains=st.booleans(),
    num_classes=st.integers(0, 1000),
)


@given(m=manifest_st)
def test_manifest_round_trip(m: NodeManifest) -> None:
    message = pb.NodeManifest.FromString(serde.manifest_to_proto(m).SerializeToString())
    assert serde.manifest_from_proto(message) == m
    assert serde.manifest_from_proto(serde.manifest_dict_to_proto(m.node_id, m.to_dict())) == m


def test_manifest_errors() -> None:
    good = NodeManifest(1, "A", ("acc",), 3, True, True, 2)
    with pytest.raises(ConfigError, match="lacks field 'role'"):
        serde.manifest_dict_to_proto(1, {k: v for k, v in good.to_dict().items() if k != "role"})
    with pytest.raises(ConfigError, match="says node 1 but was stored for node 2"):
        serde.manifest_dict_to_proto(2, good.to_dict())
    with pytest.raises(ConfigError, match="unsigned 64-bit"):
        serde.manifest_to_proto(NodeManifest(-1, "A", ("acc",), 3, True, True, 2))
    with pytest.raises(ConfigError, match=">= 0"):
        serde.manifest_to_proto(NodeManifest(1, "A", ("acc",), -3, True, True, 2))


@given(
    r=st.builds(
        BindRequest,
        node_id=st.integers(0, 2**64 - 1),
        modality=st.text(max_size=8),
        partners=st.lists(st.integers(0, 2**64 - 1), max_size=5).map(tuple),
    )
)
def test_bind_request_round_trip(r: BindRequest) -> None:
    assert serde.bind_request_from_proto(serde.bind_request_to_proto(r)) == r


@st.composite
def bindings_st(draw: st.DrawFn) -> tuple[Bindings, int]:
    n = draw(st.integers(0, 300))
    partners = draw(st.integers(1, 4))
    ints = hnp.arrays(np.int64, n, elements=st.integers(0, 2**40))
    sim = hnp.arrays(np.float32, n, elements=st.floats(-1, 1, width=32))
    b = Bindings(
        draw(ints),
        draw(hnp.arrays(np.int64, n, elements=st.integers(0, partners - 1))),
        draw(ints),
        draw(sim),
    )
    return b, partners


@settings(max_examples=50, deadline=None)
@given(tables=st.lists(bindings_st(), max_size=4), rows=st.integers(1, 50))
def test_bindings_round_trip_through_chunks(tables: list[tuple[Bindings, int]], rows: int) -> None:
    chunks = [
        pb.BindChunk.FromString(c.SerializeToString())
        for i, (b, _) in enumerate(tables)
        for c in serde.bindings_to_chunks(i, b, rows)
    ]
    back = serde.chunks_to_bindings(chunks, [p for _, p in tables])
    assert len(back) == len(tables)
    for got, (want, _) in zip(back, tables, strict=True):
        for f in ("query_index", "partner_node", "partner_index", "similarity"):
            assert_same(getattr(got, f), getattr(want, f))


def _table(n: int) -> Bindings:
    return Bindings(np.arange(n), np.zeros(n), np.arange(n), np.ones(n))


def test_bindings_stream_errors() -> None:
    one = list(serde.bindings_to_chunks(0, _table(5), rows=2))
    with pytest.raises(ShapeError, match="1 of 2 requests"):
        serde.chunks_to_bindings(one, [1, 1])
    with pytest.raises(ShapeError, match="only 0 were sent"):
        serde.chunks_to_bindings(one, [])
    with pytest.raises(ShapeError, match="announced 5 bindings; 4 arrived"):
        serde.chunks_to_bindings(one[:2], [1])
    with pytest.raises(ShapeError, match="names partner 0; the request has 0 partners"):
        serde.chunks_to_bindings(one, [0])
    second = list(serde.bindings_to_chunks(1, _table(1)))
    with pytest.raises(ShapeError, match="out of order"):
        serde.chunks_to_bindings([*one[:1], *second, *one[1:]], [1, 1])
    bad = pb.BindChunk(request_index=0, total=1, query_index=[0], partner_node=[0])
    with pytest.raises(ShapeError, match="malformed"):
        serde.chunks_to_bindings([bad], [1])


json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.text(max_size=5)
    | st.floats(allow_nan=False, allow_infinity=False)
)
json_st = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=50, deadline=None)
@given(
    doc=st.dictionaries(st.text(max_size=5), json_st, max_size=4) | st.none(),
    blobs=st.dictionaries(st.text(min_size=1, max_size=5), st.binary(max_size=200), max_size=3),
    chunk=st.integers(1, 64),
)
def test_checkpoint_round_trip(
    doc: dict[str, Any] | None, blobs: dict[str, bytes], chunk: int
) -> None:
    chunks = list(serde.checkpoint_to_chunks("r", doc, blobs, ["a", "b"], chunk_bytes=chunk))
    parts = serde.chunks_to_checkpoint(
        pb.CheckpointChunk.FromString(c.SerializeToString()) for c in chunks
    )
    assert parts.run_id == "r"
    assert parts.document == doc
    assert parts.blobs == blobs
    assert parts.blob_names == ["a", "b"]


def test_checkpoint_stream_errors() -> None:
    header = next(serde.checkpoint_to_chunks("r", None))
    blob = pb.CheckpointChunk(blob=pb.BlobHeader(name="m", size=3))
    data = pb.CheckpointChunk(data=b"ab")
    with pytest.raises(ConfigError, match="empty checkpoint stream"):
        serde.chunks_to_checkpoint([])
    with pytest.raises(ConfigError, match="start with its header"):
        serde.chunks_to_checkpoint([blob])
    with pytest.raises(ConfigError, match="before any blob header"):
        serde.chunks_to_checkpoint([header, data])
    with pytest.raises(ShapeError, match="declared 3 bytes; the stream carried 2"):
        serde.chunks_to_checkpoint([header, blob, data])
    with pytest.raises(ShapeError, match="carried more"):
        serde.chunks_to_checkpoint([header, blob, data, data])
    with pytest.raises(ConfigError, match="appears twice"):
        serde.chunks_to_checkpoint([header, blob, data, pb.CheckpointChunk(data=b"c"), blob])
    with pytest.raises(ShapeError, match="over the limit of 2 bytes"):
        serde.chunks_to_checkpoint([header, blob], max_blob_bytes=2)
    bad_doc = pb.CheckpointChunk(
        header=pb.CheckpointHeader(run_id="r", has_document=True, document_json="[1]")
    )
    with pytest.raises(ConfigError, match="must be a JSON object"):
        serde.chunks_to_checkpoint([bad_doc])


def test_json_documents() -> None:
    assert serde.load_json(serde.dump_json({"a": [1, 2.5, None]}, "doc"), "doc") == {
        "a": [1, 2.5, None]
    }
    with pytest.raises(ConfigError, match="results is not JSON-serializable"):
        serde.dump_json({"a": object()}, "results")
    with pytest.raises(ConfigError, match="must be a JSON object"):
        serde.dump_json([1], "doc")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="event is not valid JSON"):
        serde.load_json("{", "event")
    with pytest.raises(ConfigError, match="must be a JSON object, got list"):
        serde.load_json("[]", "event")


def test_event_round_trip() -> None:
    e = Event(7, {"kind": "round", "loss": 0.25})
    message = serde.event_to_proto(e)
    assert message.kind == "round" and message.seq == 7
    assert serde.event_from_proto(message) == e
