"""Node layouts: parsing, the shipped paper layout, and layouts refused before any training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mmbind.client.data.layout import NodeLayout, parse_subjects
from mmbind.client.data.partition import plan_protocol
from mmbind.client.local_data import simulation_plan
from mmbind.errors import BindingError, ConfigError
from mmbind.run_config import RunConfig


def _doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "mine",
        "shared_modality": "acc",
        "nodes": [
            {"name": "A", "modalities": ["acc", "skeleton"], "subjects": "1-2"},
            {"name": "B", "modalities": ["acc", "gyro"], "subjects": [3, 4]},
            {"name": "C", "modalities": ["skeleton", "gyro"], "subjects": "5", "labelled": True},
            {"name": "T", "modalities": ["gyro"], "subjects": "6-8", "test": True},
        ],
    }
    doc.update(changes)
    return doc


def test_the_shipped_paper_layout_is_the_protocols_split_zero() -> None:
    # Execute
    layout = NodeLayout.read("paper")
    plans = simulation_plan(RunConfig.from_mapping({"layout": "paper"}))

    # Assert
    assert layout.shared_modality == "acc" and layout.binding == "modality"
    assert plans == plan_protocol("paper", range(1, 9), split=0)


def test_a_layout_gives_one_plan_per_node_in_file_order() -> None:
    # Execute
    plans = NodeLayout.from_dict(_doc()).plans()

    # Assert
    assert [p.role.name for p in plans] == ["A", "B", "C", "T"]
    assert [p.subjects for p in plans] == [(1, 2), (3, 4), (5,), (6, 7, 8)]
    assert [(p.role.labelled, p.role.trains) for p in plans] == [
        (False, True),
        (False, True),
        (True, True),
        (True, False),  # a test node's labels score the evaluation
    ]


def test_a_layout_file_drives_the_simulation_plan(tmp_path: Path) -> None:
    # Prepare
    import tomli_w

    path = tmp_path / "layout.toml"
    path.write_text(tomli_w.dumps(_doc()))

    # Execute
    plans = simulation_plan(RunConfig.from_mapping({"layout": str(path)}))

    # Assert
    assert [p.role.modalities for p in plans][-1] == ("gyro",)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1-3,7", (1, 2, 3, 7)), ("4", (4,)), ([2, 1], (1, 2)), ("2 - 3", (2, 3))],
)
def test_subject_lists_and_ranges(value: object, expected: tuple[int, ...]) -> None:
    assert parse_subjects(value, "x") == expected


@pytest.mark.parametrize("value", ["3-1", "a", [], "1,1", [True], 3])
def test_bad_subject_specs_are_refused(value: object) -> None:
    with pytest.raises(ConfigError, match=r"^x: "):
        parse_subjects(value, "x")


def _node(i: int, **changes: Any) -> dict[str, Any]:
    doc = _doc()
    doc["nodes"][i].update(changes)
    return doc


@pytest.mark.parametrize(
    ("doc", "error", "reason"),
    [
        (_node(2, labelled=False), BindingError, "no labelled training node"),
        (_node(3, test=False), BindingError, "no test node"),
        (_node(3, modalities=["gyro", "mag"]), BindingError, "'mag', which no training node"),
        (_node(1, modalities=["gyro"]), BindingError, "1 training node(s) hold the shared"),
        (_node(1, modalities=["acc", "skeleton"]), BindingError, "the same other modalities"),
        (_node(1, subjects="2-4"), ConfigError, "subject 2 is on nodes A and B"),
        (_node(1, name="A"), ConfigError, "node name 'A' is used twice"),
        (_node(0, subjects="1-2,9"), ConfigError, "subject 9 (node A) is not in the data set"),
        (_node(0, modalities=["acc", "mag"]), ConfigError, "holds 'mag', which the data set"),
    ],
)
def test_a_layout_that_cannot_run_is_refused_saying_why(
    doc: dict[str, Any], error: type[Exception], reason: str
) -> None:
    # Prepare: a data set with mag, except where the case is about a modality it lacks
    layout = NodeLayout.from_dict(doc, "mine.toml")
    modalities = ("acc", "gyro", "skeleton") + (() if "data set" in reason else ("mag",))

    # Execute / Assert
    with pytest.raises(error) as err:
        layout.check(modalities, tuple(range(1, 9)))
    assert reason in str(err.value) and "mine.toml" in str(err.value)


def test_label_binding_needs_no_shared_modality() -> None:
    doc = _doc(binding="label")
    del doc["shared_modality"]
    doc["nodes"][1]["modalities"] = ["gyro"]
    NodeLayout.from_dict(doc).check(("acc", "gyro", "skeleton"), tuple(range(1, 9)))


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"nodes": []}, "nodes"),
        (_doc(shared_modality=""), "shared_modality"),
        (_doc(binding="pairs"), "binding"),
        (_doc(colour="red"), "colour"),
        (_node(0, modalities=[]), "nodes[0].modalities"),
        (_node(0, modalities=["Acc!"]), "nodes[0].modalities"),
        (_node(0, labelled="yes"), "nodes[0].labelled"),
        (_node(3, labelled=True), "labelled and test"),
        (_node(0, where="lab"), "nodes[0].where"),
    ],
)
def test_a_malformed_layout_names_the_field(doc: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        NodeLayout.from_dict(doc, "mine.toml")
    assert field in str(err.value) and str(err.value).startswith("mine.toml")


def test_a_layout_rules_out_split_and_nodes_per_role() -> None:
    with pytest.raises(ConfigError, match="a layout file places every node"):
        RunConfig.from_mapping({"layout": "paper", "split": 1})
