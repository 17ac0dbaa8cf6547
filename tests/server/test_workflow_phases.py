"""The workflow's phases as configure/aggregate pairs, fed fake replies (no grid, no nodes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmbind import wire
from mmbind.binding.pairing import Bindings
from mmbind.binding.weights import get_weighting
from mmbind.errors import FederationError
from mmbind.manifest import NodeManifest, NodeReport
from mmbind.methods import SPECS
from mmbind.moments import ChannelMoments
from mmbind.partners import PartnerView
from mmbind.run_config import RunConfig
from mmbind.server.binding_service import BindRequest, NodeBinding
from mmbind.server.workflow import phases, routing
from mmbind.server.workflow.schedule import Step, plan, resume_index

MMBIND = SPECS["mmbind"]
LOWER = SPECS["lower_bound"]
A = NodeManifest(10, "A", ("acc", "skeleton"), 4, False, True, 3)
B = NodeManifest(20, "B", ("acc", "gyro"), 2, False, True, 3)
C = NodeManifest(30, "C", ("skeleton", "gyro"), 3, True, True, 3)


def fusion_state(acc: float, gyro: float) -> dict[str, torch.Tensor]:
    return {
        "encoders.acc.w": torch.full((2,), float(acc)),
        "encoders.gyro.w": torch.full((2,), float(gyro)),
    }


class StateModel(torch.nn.Module):
    """Just enough of a model for the phases: a ``state_dict`` to send and average."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self._state = state

    def state_dict(self, *args: object, **kwargs: object) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return dict(self._state)


# ------------------------------------------------------------------ phase 1
def test_normalization_merges_training_nodes_only() -> None:
    # Prepare: two training nodes hold acc; the test node's moments must not count
    def report(role: str, trains: bool, value: float) -> NodeReport:
        windows = np.full((2, 5, 3), value)  # acc has 3 channels
        return NodeReport(
            role,
            ("acc",),
            2,
            False,
            trains,
            3,
            moments={"acc": ChannelMoments.from_windows(windows)},
        )

    # Execute
    norm = phases.normalization(
        [report("A", True, 1.0), report("B", True, 3.0), report("test", False, 99.0)], "channel"
    )
    # Assert
    mean, std = norm["acc"]
    assert mean.tolist() == [2.0] * 3 and std.tolist() == [1.0] * 3


def test_normalization_refuses_a_report_without_moments() -> None:
    with pytest.raises(FederationError, match="no channel moments of 'acc'"):
        phases.normalization([NodeReport("A", ("acc",), 2, False, True, 3)], "channel")


# ------------------------------------------------------------------ phase 2
def test_pretrain_sends_each_node_its_modalities_and_round_seed() -> None:
    states = {
        m: {"w": torch.full((1,), float(i))} for i, m in enumerate(("acc", "gyro", "skeleton"))
    }
    config = RunConfig(seed=3, pretrain_epochs=2)
    requests = phases.configure_pretrain(states, [A, B], config, 1, None)
    assert {n: sorted(r.states) for n, r in requests.items()} == {
        10: ["acc", "skeleton"],
        20: ["acc", "gyro"],
    }
    assert {(r.epochs, r.seed) for r in requests.values()} == {(2, 3001)}


def test_pretrain_averages_each_modality_over_its_holders_by_sample_count() -> None:
    # Prepare: A and B hold acc (1 and 3 samples); only B holds gyro; nobody skeleton
    start = {m: {"w": torch.zeros(2)} for m in ("acc", "gyro", "skeleton")}
    replies = {
        10: wire.PretrainReply({"acc": {"w": torch.full((2,), 4.0)}}, {"acc": 1.0}, {"acc": 1.0}),
        20: wire.PretrainReply(
            {"acc": {"w": torch.zeros(2)}, "gyro": {"w": torch.ones(2)}},
            {"acc": 3.0, "gyro": 0.5},
            {"acc": 3.0, "gyro": 3.0},
        ),
    }
    # Execute
    states, losses = phases.aggregate_pretrain(start, ("acc", "gyro", "skeleton"), replies)
    # Assert
    assert states["acc"]["w"].tolist() == [1.0, 1.0]  # (1 x 4 + 3 x 0) / 4
    assert states["gyro"]["w"].tolist() == [1.0, 1.0]
    assert states["skeleton"] is start["skeleton"]
    assert losses == {"acc": 2.0, "gyro": 0.5}


# ------------------------------------------------------------------ phase 5
def test_align_without_routed_features_trains_with_weight_one() -> None:
    # Prepare: features routed to A only; a routed gradient waiting for B
    models = {"mmbind": StateModel(fusion_state(0, 0))}
    view = PartnerView(np.array([1], np.int64), np.ones((1, 2), np.float32))
    routed = {"mmbind": {10: wire.Partners(np.full(4, 0.5, np.float32), {"gyro": view})}}
    grads = {"mmbind": {20: {"acc": view}}}
    # Execute
    requests = phases.configure_align(
        models, [MMBIND], [A, B], ("acc", "gyro"), RunConfig(seed=1), 2, routed, grads, None
    )
    # Assert
    assert requests[10].partners["mmbind"] is routed["mmbind"][10]
    assert requests[20].partners["mmbind"].weights.tolist() == [1.0, 1.0]
    assert (requests[10].routed_grads, list(requests[20].routed_grads)) == ({}, ["mmbind"])
    assert requests[10].seed == 1002 and requests[10].models.tracks[0].name == "mmbind"


def test_align_averages_each_modality_over_the_nodes_that_trained_it() -> None:
    # Prepare: A trained acc (2 samples x confidence 0.5), B acc and gyro (1 x 1)
    models = {"mmbind": StateModel(fusion_state(0, 0))}

    def reply(
        acc: float, gyro: float, n: float, conf: float, trained: tuple[str, ...]
    ) -> wire.AlignReply:
        return wire.AlignReply(
            {"mmbind": fusion_state(acc, gyro)},
            n,
            {"mmbind": n},
            {"mmbind": conf},
            {"mmbind": trained},
        )

    replies = {10: reply(3, 9, 2, 0.5, ("acc",)), 20: reply(1, 5, 1, 1.0, ("acc", "gyro"))}
    # Execute
    states, losses = phases.aggregate_align(models, [MMBIND], ("acc", "gyro"), replies)
    # Assert: acc (1 x 3 + 1 x 1) / 2; gyro only B's
    assert states["mmbind"]["encoders.acc.w"].tolist() == [2.0, 2.0]
    assert states["mmbind"]["encoders.gyro.w"].tolist() == [5.0, 5.0]
    assert losses == {"mmbind": 1.5}


def test_align_keeps_a_modality_trained_with_zero_weight() -> None:
    models = {"mmbind": StateModel(fusion_state(7, 7))}
    replies = {
        10: wire.AlignReply(
            {"mmbind": fusion_state(1, 1)}, 2, {"mmbind": 0}, {"mmbind": 0.0}, {"mmbind": ("acc",)}
        )
    }
    states, _ = phases.aggregate_align(models, [MMBIND], ("acc",), replies)
    assert states["mmbind"]["encoders.acc.w"].tolist() == [7.0, 7.0]


# ------------------------------------------------------------------ phase 6
def test_finetune_is_fedavg_by_labelled_samples_per_track() -> None:
    models = {t: StateModel(fusion_state(0, 0)) for t in ("mmbind", "lower_bound")}
    config = RunConfig(finetune_epochs=6, finetune_rounds=2)
    requests = phases.configure_finetune(
        models, [MMBIND, LOWER], [C], ("acc", "gyro"), config, 1, 40, None
    )
    assert (requests[30].epochs, requests[30].label_budget) == (3, 40)
    replies = {
        30: wire.FinetuneReply(
            {"mmbind": fusion_state(4, 0), "lower_bound": fusion_state(0, 4)},
            3.0,
            {"mmbind": 1.0, "lower_bound": 2.0},
        ),
        40: wire.FinetuneReply(
            {"mmbind": fusion_state(0, 0), "lower_bound": fusion_state(0, 0)},
            1.0,
            {"mmbind": 3.0, "lower_bound": 2.0},
        ),
    }
    states, losses = phases.aggregate_finetune([MMBIND, LOWER], replies)
    assert states["mmbind"]["encoders.acc.w"].tolist() == [3.0, 3.0]
    assert states["lower_bound"]["encoders.gyro.w"].tolist() == [3.0, 3.0]
    assert losses == {"mmbind": 2.0, "lower_bound": 2.0}
    with pytest.raises(FederationError, match="no labelled node answered"):
        phases.aggregate_finetune([MMBIND], {})


def test_evaluate_scores_the_summed_confusion_matrices() -> None:
    replies = {
        40: wire.EvaluateReply({"mmbind": np.array([[2, 0], [1, 1]], np.int64)}),
        50: wire.EvaluateReply({"mmbind": np.array([[0, 0], [0, 4]], np.int64)}),
    }
    metrics = phases.aggregate_evaluate([MMBIND], replies, 2)
    assert metrics["mmbind"]["accuracy"] == pytest.approx(7 / 8)
    with pytest.raises(FederationError, match="no test node answered"):
        phases.aggregate_evaluate([MMBIND], {}, 2)


# ------------------------------------------------------------------ phase 4
def binding_of_a() -> NodeBinding:
    """A (node 10) lacks gyro; rows 0, 1, 2 bound to B's (node 20) rows 1, 1, 0."""
    bindings = Bindings(
        query_index=np.array([0, 1, 2]),
        partner_node=np.array([0, 0, 0]),
        partner_index=np.array([1, 1, 0]),
        similarity=np.array([0.9, 0.8, 0.7], np.float32),
    )
    return NodeBinding(BindRequest(10, "gyro", (20,)), bindings)


def test_partner_features_are_asked_once_per_row_and_routed_back_to_the_requester() -> None:
    # Prepare
    b = binding_of_a()
    models = {"mmbind": StateModel(fusion_state(0, 0))}
    # Execute: configure, then B's fake reply (feature of row r: [r, r])
    wanted, requests = routing.configure_features(
        models, [MMBIND], {"mmbind": [b]}, set(), ("acc", "gyro"), None
    )
    assert list(requests) == [20] and wanted[20]["mmbind"]["gyro"].tolist() == [0, 1]
    features = {20: {"gyro": np.array([[0, 0], [1, 1]], np.float32)}}
    sources: routing.Sources = {}
    routed = routing.route(
        MMBIND, [b], [A, B], wanted, features, get_weighting("similarity"), sources
    )
    # Assert: A gets each of its rows' partner feature; B nothing to fill
    view = routed[10].views["gyro"]
    assert view.index.tolist() == [0, 1, 2] and view.features[:, 0].tolist() == [1, 1, 0]
    assert routed[20].views == {} and routed[20].weights.tolist() == [1.0, 1.0]
    assert sources[10]["gyro"][1].tolist() == [1, 1, 0]


def test_partner_gradients_of_many_to_one_rows_are_summed_for_the_partner() -> None:
    b = binding_of_a()
    sources: routing.Sources = {10: {"gyro": (b.partner_node_ids, b.bindings.partner_index)}}
    grads = np.array([[1, 0], [2, 0], [0, 5]], np.float32)
    replies = {10: wire.AlignReply({}, 3, {}, {}, {}, partner_grads={"mmbind": {"gyro": grads}})}
    back = routing.collect_partner_grads(MMBIND, replies, sources, dropped=set())
    assert back[20]["gyro"].index.tolist() == [0, 1]
    assert back[20]["gyro"].features.tolist() == [[0, 5], [3, 0]]
    assert routing.collect_partner_grads(MMBIND, replies, sources, dropped={20}) == {}


# ------------------------------------------------------------------ schedule
def test_schedule_keeps_the_checkpoints_text_form() -> None:
    config = RunConfig(align_rounds=2, label_budgets=(10, 0), label_budget=0)
    steps = plan(config, [MMBIND, LOWER])
    assert [str(s) for s in steps] == [
        "pretrain",
        "binding",
        "align.0",
        "align.1",
        "budget.10",
        "finetune",
        "evaluate",
    ]
    assert [Step.parse(str(s)) for s in steps] == steps
    assert resume_index(steps, "align.1") == 3
    assert resume_index(steps, "align.7") == -1  # another recipe's checkpoint starts over


@pytest.mark.parametrize("text", ["align", "pretrain.1", "budget.x", "tune", ""])
def test_a_step_that_is_not_one_is_refused(text: str) -> None:
    with pytest.raises(FederationError, match="not a step"):
        Step.parse(text)
