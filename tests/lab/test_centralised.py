"""The centralised MMBind run: every training node's data pooled in one process."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from mmbind.binding.pairing import bind_by_modality, pairing_accuracy
from mmbind.client.local_data import node_from_context, simulated_nodes
from mmbind.errors import BindingError
from mmbind.lab import centralised
from mmbind.lab.centralised import (
    bind_nodes,
    normalised_nodes,
    pretrain_pooled,
    run_centralised,
)
from mmbind.run_config import RunConfig

TINY = {
    "pretrain_rounds": 1,
    "pretrain_epochs": 1,
    "align_rounds": 1,
    "align_epochs": 1,
    "finetune_epochs": 2,
    "synthetic_trials": 2,
    "embed_dim": 32,
    "proj_dim": 32,
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(**overrides: object) -> RunConfig:
    return RunConfig.from_mapping({**TINY, **overrides})


def test_result_has_the_documented_shape_and_valid_metrics() -> None:
    # Prepare
    config = tiny(seed=3, align_rounds=2, refresh_every=1)
    seen: list[str] = []
    # Execute
    result = run_centralised(config, progress=lambda label, step, total: seen.append(label))
    # Assert
    assert set(result) == {"accuracy", "macro_f1", "test_samples", "seconds", "binding", "history"}
    assert 0.0 <= result["accuracy"] <= 1.0
    assert 0.0 <= result["macro_f1"] <= 1.0
    assert result["seconds"] > 0
    nodes = simulated_nodes(config)
    roles = {n.role: len(n.data) for n in nodes}
    assert result["test_samples"] == roles["test"]
    binding = result["binding"]
    # A binds every sample to B and B every sample to A (many-to-one, both directions).
    assert binding["pairs"] == roles["A"] + roles["B"]
    assert 0.0 <= binding["pairing_accuracy"] <= 1.0
    assert -1.0 <= binding["mean_similarity"] <= 1.0
    history = result["history"]
    for m in ("acc", "gyro", "skeleton"):
        assert len(history[f"centralised.pretrain.{m}"]) == config.pretrain_rounds
    assert len(history["centralised.align.loss"]) == config.align_rounds
    assert all(math.isfinite(v) for vs in history.values() for v in vs)
    assert {"centralised: pretrain", "centralised: align", "centralised: evaluate"} <= set(seen)


def test_pairing_accuracy_is_the_binding_services_on_the_same_embeddings() -> None:
    # Prepare: the pooled pretraining, then the embeddings each node would upload.
    config = tiny(seed=1)
    nodes, _ = normalised_nodes(config)
    model = pretrain_pooled(nodes, config)
    a, b = (next(n for n in nodes if n.role == r) for r in ("A", "B"))
    emb_a, emb_b = a.embed(model, "acc"), b.embed(model, "acc")
    lab_a, lab_b = a.evaluation_labels(), b.evaluation_labels()
    ab, ba = bind_by_modality(emb_a, [emb_b]), bind_by_modality(emb_b, [emb_a])
    expected = (
        pairing_accuracy(ab, lab_a, [lab_b]) * len(ab)
        + pairing_accuracy(ba, lab_b, [lab_a]) * len(ba)
    ) / (len(ab) + len(ba))
    # Execute
    _, report = bind_nodes(nodes, model, config)
    result = run_centralised(config)
    # Assert
    assert report["pairing_accuracy"] == pytest.approx(expected)
    assert result["binding"]["pairing_accuracy"] == pytest.approx(expected)
    assert result["binding"]["pairs"] == len(ab) + len(ba)


def test_same_seed_gives_the_same_run() -> None:
    # Prepare
    config = tiny(seed=7)
    # Execute
    first = run_centralised(config)
    second = run_centralised(config)
    # Assert
    assert first["accuracy"] == second["accuracy"]
    assert first["macro_f1"] == second["macro_f1"]
    assert first["binding"] == second["binding"]
    assert first["history"] == second["history"]


def test_alignment_pools_every_training_node_into_one_call_per_round(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare: record every align call of the run (partner embeddings, not end-to-end tuples).
    config = tiny(seed=4, align_rounds=2, align_epochs=2, refresh_every=1, partner_grads=False)
    calls: list[dict[str, Any]] = []
    real_align = centralised.align

    def spy(model: Any, own: Any, partner: Any, weights: Any, **kwargs: Any) -> float:
        calls.append({"own": own, "partner": partner, "weights": weights, **kwargs})
        return real_align(model, own, partner, weights, **kwargs)

    monkeypatch.setattr(centralised, "align", spy)
    nodes, _ = normalised_nodes(config)
    train = [n for n in nodes if n.trains]
    sizes = [len(n.data) for n in train]
    total = sum(sizes)
    starts = np.cumsum([0, *sizes[:-1]])
    # Execute
    result = run_centralised(config)
    # Assert: one call per round over every training sample, fresh seed per round.
    assert len(calls) == config.align_rounds
    assert len(result["history"]["centralised.align.loss"]) == config.align_rounds
    for rnd, call in enumerate(calls):
        assert call["epochs"] == config.align_epochs
        assert call["seed"] == config.seed * 1000 + rnd
        assert set(call["own"]) == {"acc", "gyro", "skeleton"}
        assert call["weights"].shape == (total,)
        for m, x in call["own"].items():
            rows = call["own_present"][m]
            assert x.shape[0] == total and rows.shape == (total,)
            for node, start, size in zip(train, starts, sizes, strict=True):
                block, held = x[start : start + size], rows[start : start + size]
                if m in node.modalities:
                    assert bool(held.all())
                    assert torch.equal(block, node.tensor(m))
                else:
                    assert not bool(held.any())
                    assert not bool(block.any())
        # A (acc+skeleton) lacks gyro and B (acc+gyro) lacks skeleton: both bind through acc
        # to each other; C (skeleton+gyro) holds no acc and binds to nobody.
        roles = [n.role for n in train]
        bound = call["partner_present"]
        assert set(bound) == {"gyro", "skeleton"}
        for m, role in (("gyro", "A"), ("skeleton", "B")):
            k = roles.index(role)
            expect = torch.zeros(total, dtype=torch.bool)
            expect[starts[k] : starts[k] + sizes[k]] = True
            assert torch.equal(bound[m], expect)
            assert call["partner"][m].shape == (total, config.proj_dim)


def test_end_to_end_alignment_pairs_the_partners_raw_windows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare: end-to-end tuples (partner_grads): a node's lacking modality is filled with the
    # bound partner's *windows*, encoded with gradient in the same batch.
    config = tiny(seed=4, align_rounds=1, align_epochs=1, partner_grads=True)
    calls: list[dict[str, Any]] = []
    real_align = centralised.align

    def spy(model: Any, own: Any, partner: Any, weights: Any, **kwargs: Any) -> float:
        calls.append({"own": own, "partner": partner, **kwargs})
        return real_align(model, own, partner, weights, **kwargs)

    monkeypatch.setattr(centralised, "align", spy)
    nodes, _ = normalised_nodes(config)
    train = [n for n in nodes if n.trains]
    sizes = [len(n.data) for n in train]
    starts = np.cumsum([0, *sizes[:-1]])
    roles = [n.role for n in train]
    # Execute
    run_centralised(config)
    # Assert: A (acc+skeleton) gets gyro windows that are rows of B's gyro, and B skeleton
    # windows that are rows of A's; C binds to nobody and keeps its lacking modality empty.
    (call,) = calls
    for m, role, partner in (("gyro", "A", "B"), ("skeleton", "B", "A")):
        k, j = roles.index(role), roles.index(partner)
        block = call["own"][m][starts[k] : starts[k] + sizes[k]]
        held = call["own_present"][m][starts[k] : starts[k] + sizes[k]]
        assert bool(held.all())
        source = train[j].tensor(m).flatten(1)
        for row in block.flatten(1):
            assert bool((source == row).all(dim=1).any()), f"{role}'s {m} row is no {partner} row"
    c = roles.index("C")
    assert not bool(call["own_present"]["acc"][starts[c] : starts[c] + sizes[c]].any())
    assert not any(bool(b.any()) for b in call["partner_present"].values())


def test_several_nodes_per_role_are_pooled() -> None:
    # Prepare: two nodes per role (one subject each), so each modality set pools two nodes.
    config = tiny(nodes_per_role=2)
    # Execute
    result = run_centralised(config)
    # Assert
    roles: dict[str, int] = {}
    for n in simulated_nodes(config):
        role = n.role.rstrip("0123456789")  # node names are A1, A2, ... per role
        roles[role] = roles.get(role, 0) + len(n.data)
    assert result["test_samples"] == roles["test"]
    assert result["binding"]["pairs"] == roles["A"] + roles["B"]
    assert 0.0 <= result["accuracy"] <= 1.0


def test_a_layout_that_cannot_bind_is_refused_before_training() -> None:
    # Prepare: no node holds the magnetometer, so nothing binds through it.
    config = tiny(shared_modality="mag")
    # Execute / Assert
    with pytest.raises(BindingError, match=r"no two training nodes can bind through 'mag'"):
        run_centralised(config)


def test_simulated_nodes_are_the_simulation_engines_nodes() -> None:
    # Prepare
    config = tiny(seed=2)
    # Execute
    nodes = simulated_nodes(config)
    # Assert: the same roles and data as each simulated ClientApp builds for its partition.
    assert [n.role for n in nodes] == ["A", "B", "C", "test"]
    for pid, node in enumerate(nodes):
        cached = node_from_context(config, {"partition-id": pid})
        assert node is not cached
        assert (node.role, node.labelled, node.trains) == (
            cached.role,
            cached.labelled,
            cached.trains,
        )
        assert node.modalities == cached.modalities
        for m in node.modalities:
            np.testing.assert_array_equal(node.data.windows[m], cached.data.windows[m])
        np.testing.assert_array_equal(node.data.labels, cached.data.labels)
