"""Every message of the Flower contract survives its own record, and Flower's wire format.

Each message of :mod:`mmbind.wire` is encoded with ``to_record``, sent through Flower's
protobuf serialisation of a ``RecordDict`` (what a SuperLink stores and forwards) and
decoded with ``from_record``; the result must equal the original field by field, bit for
bit, dtypes included.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
import torch
from flwr.app import ConfigRecord, RecordDict
from flwr.common.serde import recorddict_from_proto, recorddict_to_proto
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mmbind import wire
from mmbind.errors import FederationError
from mmbind.manifest import NodeReport
from mmbind.moments import ChannelMoments
from mmbind.partners import PartnerView

MODALITIES = ("acc", "gyro", "skeleton")
TRACKS = ("mmbind", "lower_bound", "upper_bound")


def same(a: Any, b: Any, where: str = "message") -> None:
    """Assert ``a`` and ``b`` are equal all the way down (arrays and tensors: dtype and bits)."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        for f in dataclasses.fields(a):
            same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys {list(a)} != {list(b)}"
        for k in a:
            same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, tuple | list):
        assert len(a) == len(b), f"{where}: {len(a)} != {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}: {a.dtype}{a.shape}"
        assert a.tobytes() == b.tobytes(), f"{where}: values differ"
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), f"{where}: tensors differ"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def over_the_wire(content: RecordDict) -> RecordDict:
    """The content as a SuperLink hands it on: through Flower's protobuf form."""
    return recorddict_from_proto(recorddict_to_proto(content))


def round_trip(message: Any) -> Any:
    return type(message).from_record(over_the_wire(message.to_record()))


# ------------------------------------------------------------------ strategies
floats32 = hnp.arrays(
    np.float32,
    hnp.array_shapes(min_dims=1, max_dims=2, max_side=5),
    elements=st.floats(-1e3, 1e3, width=32),
)
modality_sets = st.lists(st.sampled_from(MODALITIES), min_size=1, max_size=3, unique=True).map(
    tuple
)
track_sets = st.lists(st.sampled_from(TRACKS), min_size=1, max_size=3, unique=True)
seeds = st.integers(0, 2**31 - 1)


@st.composite
def states(draw: st.DrawFn) -> dict[str, torch.Tensor]:
    """A small torch state: float weights, an int64 counter and a bool mask."""
    w = draw(floats32)
    return {
        "layer.weight": torch.from_numpy(w),
        "steps": torch.tensor(draw(st.integers(0, 10**6)), dtype=torch.int64),
        "mask": torch.tensor(draw(st.lists(st.booleans(), min_size=1, max_size=4))),
    }


@st.composite
def normalizations(draw: st.DrawFn) -> wire.Normalization | None:
    if draw(st.booleans()):
        return None
    out: wire.Normalization = {}
    for m in draw(modality_sets):
        c = draw(st.integers(1, 6))
        mean = draw(hnp.arrays(np.float32, c, elements=st.floats(-5, 5, width=32)))
        std = draw(hnp.arrays(np.float32, c, elements=st.floats(0.125, 5, width=32)))
        out[m] = (mean, std)
    return out


@st.composite
def models(draw: st.DrawFn) -> wire.Models:
    names = draw(track_sets)
    tracks = tuple(
        wire.Track(n, oracle=draw(st.booleans()), mask_vector=draw(st.booleans())) for n in names
    )
    return wire.Models(draw(modality_sets), tracks, {n: draw(states()) for n in names})


@st.composite
def views(draw: st.DrawFn, dim: int = 3) -> PartnerView:
    p = draw(st.integers(0, 5))
    index = draw(hnp.arrays(np.int64, p, elements=st.integers(0, 100)))
    features = draw(hnp.arrays(np.float32, (p, dim), elements=st.floats(-10, 10, width=32)))
    return PartnerView(index, features)


# ------------------------------------------------------------------ phase 1
def test_manifest_request_is_empty() -> None:
    assert len(wire.ManifestRequest().to_record()) == 0
    same(round_trip(wire.ManifestRequest()), wire.ManifestRequest())


@settings(max_examples=25, deadline=None)
@given(
    modalities=modality_sets,
    n=st.integers(1, 10**6),
    flags=st.tuples(st.booleans(), st.booleans(), st.booleans()),
    dataset=st.one_of(st.none(), st.sampled_from(["synthetic", "utd-mhad"])),
    channels=st.integers(1, 6),
    data=st.data(),
)
def test_manifest_reply_round_trips(
    modalities: tuple[str, ...],
    n: int,
    flags: tuple[bool, bool, bool],
    dataset: str | None,
    channels: int,
    data: st.DataObject,
) -> None:
    moments = {
        m: ChannelMoments(
            data.draw(st.integers(0, 10**9)),
            data.draw(hnp.arrays(np.float64, channels, elements=st.floats(-1e6, 1e6))),
            data.draw(hnp.arrays(np.float64, channels, elements=st.floats(0, 1e6))),
        )
        for m in modalities
    }
    report = NodeReport(
        role="A",
        modalities=modalities,
        num_samples=n,
        labelled=flags[0],
        trains=flags[1],
        num_classes=27,
        dataset=dataset,
        paired_data=flags[2],
        moments=moments,
    )
    same(round_trip(wire.ManifestReply(report)), wire.ManifestReply(report))


def test_manifest_reply_carries_no_shape_entry() -> None:
    report = NodeReport("A", ("acc",), 3, True, True, 2, "synthetic", False, {})
    info = wire.ManifestReply(report).to_record().config_records[wire.MANIFEST_KEY]
    assert not [k for k in info if k.startswith("shape.")]


def test_manifest_reply_of_an_older_node_takes_the_defaults() -> None:
    # Prepare: a node that reported neither its data set nor whether it holds paired data
    record = wire.ManifestReply(NodeReport("B", ("acc", "gyro"), 4, False, True, 6)).to_record()
    info = record.config_records[wire.MANIFEST_KEY]
    del info["paired-data"]
    # Execute
    report = wire.ManifestReply.from_record(record).report
    # Assert
    assert (report.dataset, report.paired_data, report.moments) == (None, True, {})
    assert report.manifest(7).to_dict()["node_id"] == 7


# ------------------------------------------------------------------ phase 2
@settings(max_examples=20, deadline=None)
@given(modalities=modality_sets, epochs=st.integers(1, 50), seed=seeds, data=st.data())
def test_pretrain_messages_round_trip(
    modalities: tuple[str, ...], epochs: int, seed: int, data: st.DataObject
) -> None:
    ae = {m: data.draw(states()) for m in modalities}
    norm = data.draw(normalizations())
    request = wire.PretrainRequest(ae, epochs, seed, norm)
    same(round_trip(request), request)
    reply = wire.PretrainReply(
        ae,
        {m: data.draw(st.floats(0, 10)) for m in modalities},
        {m: float(data.draw(st.integers(1, 1000))) for m in modalities},
    )
    same(round_trip(reply), reply)


# ------------------------------------------------------------------ phase 3
@settings(max_examples=20, deadline=None)
@given(
    modalities=modality_sets,
    labels=st.booleans(),
    evaluation=st.booleans(),
    n=st.integers(1, 8),
    data=st.data(),
)
def test_embed_messages_round_trip(
    modalities: tuple[str, ...], labels: bool, evaluation: bool, n: int, data: st.DataObject
) -> None:
    request = wire.EmbedRequest(
        modalities,
        data.draw(states()),
        modalities[0],
        labels=labels,
        evaluation_labels=evaluation,
        normalization=data.draw(normalizations()),
    )
    same(round_trip(request), request)
    ids = data.draw(hnp.arrays(np.int64, n, elements=st.integers(0, 26)))
    reply = wire.EmbedReply(
        data.draw(hnp.arrays(np.float32, (n, 4), elements=st.floats(-1, 1, width=32))),
        labels=ids if labels else None,
        evaluation_labels=ids if evaluation else None,
    )
    same(round_trip(reply), reply)


# ------------------------------------------------------------------ phase 4
@settings(max_examples=20, deadline=None)
@given(lockstep=models(), data=st.data())
def test_features_messages_round_trip(lockstep: wire.Models, data: st.DataObject) -> None:
    rows = {
        t.name: {
            m: data.draw(
                hnp.arrays(np.int64, data.draw(st.integers(0, 5)), elements=st.integers(0, 99))
            )
            for m in lockstep.modalities
        }
        for t in lockstep.tracks
    }
    request = wire.FeaturesRequest(lockstep, rows, data.draw(normalizations()))
    same(round_trip(request), request)
    reply = wire.FeaturesReply(
        {t: {m: data.draw(views()).features for m in per_m} for t, per_m in rows.items()}
    )
    same(round_trip(reply), reply)


# ------------------------------------------------------------------ phase 5
@settings(max_examples=20, deadline=None)
@given(lockstep=models(), epochs=st.integers(1, 9), seed=seeds, data=st.data())
def test_align_messages_round_trip(
    lockstep: wire.Models, epochs: int, seed: int, data: st.DataObject
) -> None:
    names = [t.name for t in lockstep.tracks]
    partners = {
        name: wire.Partners(
            data.draw(hnp.arrays(np.float32, 6, elements=st.floats(0, 1, width=32))),
            {m: data.draw(views()) for m in data.draw(modality_sets)},
        )
        for name in names
    }
    routed = {name: {m: data.draw(views())} for name in names[:1] for m in lockstep.modalities}
    request = wire.AlignRequest(
        lockstep, epochs, seed, partners, routed, data.draw(normalizations())
    )
    same(round_trip(request), request)
    reply = wire.AlignReply(
        states=dict(lockstep.states),
        num_samples=float(data.draw(st.integers(1, 500))),
        losses={n: data.draw(st.floats(0, 10)) for n in names},
        confidence={n: data.draw(st.floats(0, 1)) for n in names},
        trained={n: data.draw(modality_sets) for n in names},
        partner_grads={names[0]: {"gyro": data.draw(views()).features}},
    )
    same(round_trip(reply), reply)


def test_align_reply_without_partner_gradients_sends_none() -> None:
    state = {"w": torch.ones(2)}
    reply = wire.AlignReply(
        {"mmbind": state}, 4.0, {"mmbind": 0.5}, {"mmbind": 1.0}, {"mmbind": ("acc",)}
    )
    record = reply.to_record()
    assert wire.track_key("mmbind", wire.PARTNER_GRAD) not in record.array_records
    same(round_trip(reply), reply)


# ------------------------------------------------------------------ phase 6
@settings(max_examples=20, deadline=None)
@given(
    lockstep=models(),
    epochs=st.integers(1, 9),
    seed=seeds,
    budget=st.one_of(st.none(), st.integers(0, 500)),
    data=st.data(),
)
def test_finetune_and_evaluate_messages_round_trip(
    lockstep: wire.Models, epochs: int, seed: int, budget: int | None, data: st.DataObject
) -> None:
    norm = data.draw(normalizations())
    request = wire.FinetuneRequest(lockstep, epochs, seed, budget, norm)
    same(round_trip(request), request)
    names = [t.name for t in lockstep.tracks]
    reply = wire.FinetuneReply(
        dict(lockstep.states), float(data.draw(st.integers(1, 99))), {n: 0.25 for n in names}
    )
    same(round_trip(reply), reply)
    evaluate = wire.EvaluateRequest(lockstep, norm)
    same(round_trip(evaluate), evaluate)
    k = data.draw(st.integers(1, 5))
    confusion = wire.EvaluateReply(
        {n: data.draw(hnp.arrays(np.int64, (k, k), elements=st.integers(0, 50))) for n in names}
    )
    same(round_trip(confusion), confusion)


# ------------------------------------------------------------------ errors
def test_a_reply_lacking_a_record_is_a_federation_error() -> None:
    with pytest.raises(FederationError, match="'embeddings'"):
        wire.EmbedReply.from_record(RecordDict())
    with pytest.raises(FederationError, match="'manifest'"):
        wire.ManifestReply.from_record(RecordDict({"config": ConfigRecord()}))


def test_a_mistyped_setting_is_a_federation_error() -> None:
    record = wire.PretrainRequest({}, 2, 3).to_record()
    record.config_records[wire.CONFIG]["epochs"] = "two"
    with pytest.raises(FederationError, match="'epochs' must be a number"):
        wire.PretrainRequest.from_record(record)
