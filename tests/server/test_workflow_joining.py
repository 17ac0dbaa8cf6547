"""Late nodes: who the run takes, and how they are bound against the bound nodes."""

from __future__ import annotations

import re

import numpy as np
import pytest

from mmbind.binding.pairing import bind_by_modality
from mmbind.binding.search import l2_normalize
from mmbind.manifest import NodeManifest, NodeReport
from mmbind.server.binding_service import BindingService, NodeBinding, plan_requests
from mmbind.server.store import InMemoryBindingStore
from mmbind.server.workflow.joining import LateBinder, refusal

N = {10: 30, 11: 25, 14: 20}  # samples of A, B and the joiner D


def manifests() -> dict[int, NodeManifest]:
    """The paper's layout (A, B bind through acc; C without it; a test node)."""
    return {
        10: NodeManifest(10, "A", ("acc", "skeleton"), N[10], False, True, 4),
        11: NodeManifest(11, "B", ("acc", "gyro"), N[11], False, True, 4),
        12: NodeManifest(12, "C", ("gyro", "skeleton"), 12, True, True, 4),
        13: NodeManifest(13, "test", ("gyro", "skeleton"), 12, False, False, 4),
    }


def embeddings(seed: int) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {n: l2_normalize(rng.normal(size=(size, 8))).astype(np.float32) for n, size in N.items()}


def bound(emb: dict[int, np.ndarray]) -> list[NodeBinding]:
    """Phase 3's bindings of A and B, as the binding service makes them."""
    service = BindingService(InMemoryBindingStore(), "r")
    for m in manifests().values():
        service.register(m)
    for n in (10, 11):
        service.upload(n, emb[n])
    return service.bind(plan_requests(list(manifests().values()), "acc"))


def test_a_late_node_binds_against_the_bound_nodes_only_and_takes_only_closer_samples() -> None:
    # Prepare: A and B bound; D (acc, gyro, like B) joins
    emb = embeddings(0)
    before = bound(emb)
    nodes = list(manifests().values())
    late = LateBinder(nodes, "acc", ("acc", "gyro", "skeleton"), emb, before)
    joiner = NodeManifest(14, "D", ("acc", "gyro"), N[14], False, True, 4)
    # Execute
    after, record = late.add(joiner, emb[14], before)
    # Assert: D lacks skeleton and binds to A (whose samples are all it can bind with)
    mine = {(b.request.node_id, b.request.modality): b for b in after}
    d = mine[(14, "skeleton")]
    ref = bind_by_modality(emb[14], [emb[10]])
    assert d.request.partners == (10,)
    np.testing.assert_array_equal(d.bindings.partner_index, ref.partner_index)
    np.testing.assert_allclose(d.bindings.similarity, ref.similarity, rtol=1e-6)
    # ... A lacks gyro: its binding is what binding against B and D at once gives, and the
    # rows that stayed with B are bit for bit those of phase 3
    a_old = next(b for b in before if b.request.node_id == 10)
    a_new = mine[(10, "gyro")]
    full = bind_by_modality(emb[10], [emb[11], emb[14]])
    assert a_new.request.partners == (11, 14)
    np.testing.assert_array_equal(a_new.partner_node_ids, np.asarray((11, 14))[full.partner_node])
    np.testing.assert_array_equal(a_new.bindings.partner_index, full.partner_index)
    stayed = a_new.partner_node_ids == 11
    assert 0 < int(stayed.sum()) < N[10]
    np.testing.assert_array_equal(
        a_new.bindings.similarity[stayed], a_old.bindings.similarity[stayed]
    )
    np.testing.assert_array_equal(
        a_new.bindings.partner_index[stayed], a_old.bindings.partner_index[stayed]
    )
    # ... B's binding (to A) is untouched, and only D's pairs with A were scored
    b_old = next(b for b in before if b.request.node_id == 11)
    assert mine[(11, "skeleton")] is b_old
    assert record == {
        "pairs": N[14],
        "rebound": int((~stayed).sum()),
        "similarities": 2 * N[14] * N[10],
    }


def report(**changes: object) -> NodeReport:
    values: dict[str, object] = {
        "role": "D",
        "modalities": ("acc", "gyro"),
        "num_samples": 20,
        "labelled": False,
        "trains": True,
        "num_classes": 4,
        "dataset": "synthetic",
        "paired_data": False,
    }
    values.update(changes)
    return NodeReport(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "paired", "why"),
    [
        ({"role": "B"}, False, "name 'B' is taken"),
        ({"num_classes": 5}, False, "5 classes, the run 4"),
        ({"dataset": "utd-mhad"}, False, "holds 'utd-mhad' data"),
        ({"modalities": ("acc", "depth")}, False, r"\['depth'\], which the run's model"),
        ({}, True, "no naturally paired data"),
    ],
)
def test_a_late_node_the_run_cannot_take_is_refused_with_the_reason(
    changes: dict[str, object], paired: bool, why: str
) -> None:
    modalities = ("acc", "gyro", "skeleton")
    reason = refusal(report(**changes), manifests(), modalities, 4, ["synthetic"], paired)
    assert reason is not None and re.search(why, reason), reason


def test_a_late_node_that_fits_is_taken() -> None:
    modalities = ("acc", "gyro", "skeleton")
    assert refusal(report(), manifests(), modalities, 4, ["synthetic"], False) is None
