"""The coordinator's binding plan and bindings, on the in-process store."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest

from mmbind.binding.search import l2_normalize
from mmbind.binding.weights import get_weighting
from mmbind.errors import BindingError, ConfigError, DataError, UnknownNodeError
from mmbind.server.binding_service import (
    BindingService,
    NodeManifest,
    binding_report,
    check_bindable,
    check_layout,
    plan_requests,
    tuple_weights,
)
from mmbind.server.store import InMemoryBindingStore
from mmbind.server.workflow.binding import check_search


def paper_nodes(n: int = 6) -> list[NodeManifest]:
    def node(
        i: int, role: str, mods: str, labelled: bool = False, trains: bool = True
    ) -> NodeManifest:
        return NodeManifest(i, role, tuple(mods.split(",")), n, labelled, trains, 3)

    return [
        node(10, "A", "acc,skeleton"),
        node(11, "B", "acc,gyro"),
        node(12, "C", "gyro,skeleton", labelled=True),
        node(13, "test", "gyro,skeleton", trains=False),
    ]


def test_plan_binds_A_and_B_both_directions() -> None:
    requests = plan_requests(paper_nodes(), "acc")
    assert {(r.node_id, r.modality, r.partners) for r in requests} == {
        (10, "gyro", (11,)),
        (11, "skeleton", (10,)),
    }


def test_run_that_cannot_bind_is_refused_with_the_layout() -> None:
    nodes = [n for n in paper_nodes() if n.role != "B"]
    with pytest.raises(
        BindingError, match=r"no two training nodes can bind through 'acc'.*node 10 \(A\)"
    ):
        check_bindable(nodes, "acc")


def test_layout_gives_classes_and_registry_ordered_modalities() -> None:
    # Execute
    layout = check_layout(paper_nodes(), "acc")
    # Assert
    assert layout.num_classes == 3
    assert layout.modalities == ("acc", "gyro", "skeleton")


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"C": {"num_classes": 4}}, DataError, r"disagree on the number of classes: \[3, 4\]"),
        ({"C": {"labelled": False}}, BindingError, "no labelled node"),
        ({"test": {"trains": True}}, BindingError, "no test node"),
        ({"test": {"modalities": ("gyro", "mag")}}, BindingError, r"test nodes hold \['mag'\]"),
        ({"B": {"modalities": ("gyro",)}}, BindingError, "no two training nodes can bind"),
    ],
)
def test_layout_refuses_what_mmbind_cannot_run(
    change: dict[str, dict[str, object]], error: type[Exception], message: str
) -> None:
    # Prepare
    nodes = [dataclasses.replace(n, **change.get(n.role, {})) for n in paper_nodes()]  # type: ignore[arg-type]
    # Execute / Assert
    with pytest.raises(error, match=message):
        check_layout(nodes, "acc")


def test_layout_without_binding_methods_skips_the_binding_check() -> None:
    nodes = [n for n in paper_nodes() if n.role != "B"]
    assert check_layout(nodes, None).modalities == ("acc", "gyro", "skeleton")


def test_bindings_are_top1_matches_and_weights_follow_similarity() -> None:
    # Prepare: B's samples are A's, permuted, with a little noise.
    rng = np.random.default_rng(0)
    a = l2_normalize(rng.normal(size=(6, 8)))
    perm = rng.permutation(6)
    b = l2_normalize(a[perm] + 0.01 * rng.normal(size=(6, 8)))
    service = BindingService(InMemoryBindingStore(), "run")
    for node in paper_nodes():
        service.register(node)
    service.upload(10, a)
    service.upload(11, b)
    # Execute
    bindings = service.bind(plan_requests(service.nodes, "acc"))
    # Assert
    a_to_b = next(x for x in bindings if x.request.node_id == 10)
    np.testing.assert_array_equal(perm[a_to_b.bindings.partner_index], np.arange(6))
    assert (a_to_b.partner_node_ids == 11).all()
    weights = tuple_weights(6, 10, bindings, get_weighting("similarity"))
    np.testing.assert_allclose(weights, np.clip(a_to_b.bindings.similarity, 0, 1), rtol=1e-6)
    np.testing.assert_array_equal(
        tuple_weights(6, 12, bindings, get_weighting("similarity")), np.ones(6)
    )
    labels = {10: np.arange(6), 11: perm}
    report = binding_report(bindings, labels)
    assert report["pairs"] == 12
    assert report["pairing_accuracy"] == pytest.approx(1.0)


def _label_bindings(ids: dict[str, int]) -> list[tuple[str, str, list[tuple[str, int]]]]:
    """Label binding of B against two acc+skeleton partners, under the node ids ``ids``;
    per request: (its node's role, the modality, each query's partner as (role, row))."""
    rng = np.random.default_rng(0)
    layout = {"A": "acc,skeleton", "A2": "acc,skeleton", "B": "acc,gyro"}
    service = BindingService(InMemoryBindingStore(), "run")
    for role, mods in layout.items():
        service.register(NodeManifest(ids[role], role, tuple(mods.split(",")), 12, False, True, 3))
    for role in layout:  # the same data whatever the ids
        service.upload(ids[role], rng.normal(size=(12, 8)).astype(np.float32), np.arange(12) % 3)
    roles = {v: k for k, v in ids.items()}
    out = []
    for b in service.bind(plan_requests(service.nodes, "acc"), by="label", seed=5):
        partner = [roles[int(n)] for n in b.partner_node_ids]
        out.append(
            (roles[b.request.node_id], b.request.modality,
             list(zip(partner, b.bindings.partner_index.tolist(), strict=True)))
        )  # fmt: skip
    return sorted(out)


def test_label_binding_depends_on_roles_not_on_the_node_ids_flower_draws() -> None:
    # Execute: the same nodes and data, ids drawn twice (as Flower does, at random)
    first = _label_bindings({"A": 10, "A2": 11, "B": 12})
    second = _label_bindings({"A": 9_000_017, "A2": 42, "B": 7})
    # Assert: the same partner for every sample, and B drew from both of its partners
    assert first == second
    b_gets_skeleton = next(r for r in first if r[0] == "B")
    assert {role for role, _ in b_gets_skeleton[2]} == {"A", "A2"}


def _two_bound_nodes(threshold: int) -> tuple[BindingService, np.ndarray]:
    """A and B of :func:`paper_nodes` uploaded (B is A permuted); ``threshold`` pairs."""
    rng = np.random.default_rng(0)
    a = l2_normalize(rng.normal(size=(6, 8)))
    perm = rng.permutation(6)
    service = BindingService(InMemoryBindingStore(), "run", ann_threshold=threshold)
    for node in paper_nodes():
        service.register(node)
    service.upload(10, a)
    service.upload(11, l2_normalize(a[perm] + 0.01 * rng.normal(size=(6, 8))))
    return service, perm


def test_above_the_threshold_binding_is_approximate_with_its_recall() -> None:
    pytest.importorskip("faiss")  # the optional extra 'ann'
    # Prepare: 6 x 6 = 36 pairs per request, above a threshold of 35
    service, perm = _two_bound_nodes(threshold=35)
    # Execute
    bindings = service.bind(plan_requests(service.nodes, "acc"))
    # Assert: searched through HNSW, every query checked, all bound as exact search binds
    a_to_b = next(x for x in bindings if x.request.node_id == 10)
    assert a_to_b.search is not None
    assert (a_to_b.search.method, a_to_b.search.pairs) == ("hnsw", 36)
    assert (a_to_b.search.recall, a_to_b.search.sample) == (1.0, 6)
    np.testing.assert_array_equal(perm[a_to_b.bindings.partner_index], np.arange(6))


def test_up_to_the_threshold_binding_is_exact() -> None:
    service, _ = _two_bound_nodes(threshold=36)
    bindings = service.bind(plan_requests(service.nodes, "acc"))
    assert [b.search for b in bindings] == [None, None]


def test_approximate_binding_without_faiss_is_refused_before_training(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare: faiss unimportable, as in an install without the 'ann' extra
    monkeypatch.setitem(sys.modules, "faiss", None)
    # Execute / Assert: phase 1's check names the extra and the threshold
    with pytest.raises(ConfigError, match=r"36 pairs > ann-threshold 35.*mmbind\[ann\]"):
        check_search(paper_nodes(), "acc", 35)
    check_search(paper_nodes(), "acc", 36)  # exact: faiss not needed


def test_upload_checks_node_and_shape() -> None:
    service = BindingService(InMemoryBindingStore(), "run")
    for node in paper_nodes():
        service.register(node)
    with pytest.raises(UnknownNodeError, match="unknown node 99"):
        service.upload(99, np.zeros((6, 4), np.float32))
    with pytest.raises(BindingError, match=r"expected \(6, d\)"):
        service.upload(10, np.zeros((5, 4), np.float32))
    with pytest.raises(BindingError, match="non-finite"):
        service.upload(10, np.full((6, 4), np.nan, np.float32))
