"""Role partitioning: subject-disjoint roles, docs/design.md's split 0, node datasets."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmbind.client.data.partition import (
    PAPER_ROLES,
    ROLE_A,
    ROLE_B,
    ROLE_C,
    ROLE_TEST,
    node_dataset,
    plan_nodes,
    plan_protocol,
    protocol_folds,
    protocol_subjects,
    role_by_name,
)
from mmbind.client.data.synthetic import make_synthetic
from mmbind.errors import ConfigError, DataError


def test_split_zero_is_the_design_assignment() -> None:
    # Execute
    plans = plan_nodes(range(1, 9))

    # Assert
    assert [(p.node, p.role.name, p.subjects) for p in plans] == [
        (0, "A", (1, 2)),
        (1, "B", (3, 4)),
        (2, "C", (5, 6)),
        (3, "test", (7, 8)),
    ]


def test_split_one_rotates_by_one_subject_pair() -> None:
    plans = plan_nodes([8, 7, 6, 5, 4, 3, 2, 1], split=1)
    assert [p.subjects for p in plans] == [(3, 4), (5, 6), (7, 8), (1, 2)]
    assert [p.subjects for p in plan_nodes(range(1, 9), split=4)] == [
        p.subjects for p in plan_nodes(range(1, 9))
    ]


def test_paper_roles_modalities_and_flags() -> None:
    assert PAPER_ROLES == (ROLE_A, ROLE_B, ROLE_C, ROLE_TEST)
    assert ROLE_A.modalities == ("acc", "skeleton") and not ROLE_A.labelled
    assert ROLE_B.modalities == ("acc", "gyro") and not ROLE_B.labelled
    assert ROLE_C.modalities == ("skeleton", "gyro") and ROLE_C.labelled and ROLE_C.trains
    assert ROLE_TEST.modalities == ("skeleton", "gyro") and not ROLE_TEST.trains
    assert role_by_name("C") is ROLE_C
    with pytest.raises(ConfigError, match="valid roles: A, B, C, test"):
        role_by_name("D")


@settings(max_examples=80, deadline=None)
@given(
    subjects=st.lists(st.integers(0, 200), min_size=4, max_size=16, unique=True),
    split=st.integers(0, 9),
    nodes_per_role=st.integers(1, 5),
)
def test_no_subject_in_two_roles(subjects: list[int], split: int, nodes_per_role: int) -> None:
    # Execute
    plans = plan_nodes(subjects, split=split, nodes_per_role=nodes_per_role)

    # Assert
    assert len(plans) == 4 * nodes_per_role
    assert [p.node for p in plans] == list(range(len(plans)))
    assert [p.role.name for p in plans] == [
        r.name for r in PAPER_ROLES for _ in range(nodes_per_role)
    ]
    by_role: dict[str, set[int]] = {}
    for p in plans:
        assert p.subjects, "every node holds at least one subject"
        by_role.setdefault(p.role.name, set()).update(p.subjects)
    roles = list(by_role.values())
    for i, a in enumerate(roles):
        for b in roles[i + 1 :]:
            assert not a & b
    assert set().union(*roles) == set(subjects)
    sizes = sorted(len(s) for s in roles)
    assert sizes[-1] - sizes[0] <= 1
    # nodes within a role never hold the same (subject, trial shard) twice
    cells = [(s, p.trial_shard) for p in plans for s in p.subjects]
    assert len(cells) == len(set(cells))


def test_plan_rejects_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="3 subjects cannot be divided over 4 roles"):
        plan_nodes([1, 2, 3])
    with pytest.raises(ConfigError, match=r"repeated: \[2\]"):
        plan_nodes([1, 2, 2, 3, 4])
    with pytest.raises(ConfigError, match="split must be >= 0"):
        plan_nodes(range(1, 9), split=-1)
    with pytest.raises(ConfigError, match="nodes_per_role must be >= 1"):
        plan_nodes(range(1, 9), nodes_per_role=0)


def test_node_dataset_restricts_subjects_and_modalities() -> None:
    # Prepare
    ds = make_synthetic(seed=1)
    plans = plan_nodes(ds.subject_ids)

    # Execute
    parts = [node_dataset(p, ds) for p in plans]

    # Assert
    for plan, part in zip(plans, parts, strict=True):
        assert part.subject_ids == plan.subjects
        assert part.modalities == plan.role.modalities
    assert sum(len(p) for p in parts) == len(ds)


def test_trial_shards_split_a_subject_disjointly() -> None:
    # Prepare: 2 subjects per role, 4 nodes per role -> 2 nodes per subject
    ds = make_synthetic(seed=0, trials=5)
    plans = plan_nodes(ds.subject_ids, nodes_per_role=4)

    # Execute
    a_nodes = [node_dataset(p, ds) for p in plans if p.role.name == "A"]

    # Assert
    assert [p.trial_shard for p in plans[:4]] == [(0, 2), (1, 2), (0, 2), (1, 2)]
    assert a_nodes[0].subject_ids == (1,) and set(a_nodes[0].trials) == {1, 3, 5}
    assert set(a_nodes[1].trials) == {2, 4}
    assert sum(len(n) for n in a_nodes) == len(ds.for_subjects([1, 2]))


def test_empty_trial_shard_raises_data_error() -> None:
    ds = make_synthetic(seed=0, trials=1)
    plan = plan_nodes(ds.subject_ids, nodes_per_role=4)[1]
    with pytest.raises(DataError, match="fewer than 2 distinct trials"):
        node_dataset(plan, ds)


def test_node_dataset_missing_modality_raises() -> None:
    ds = make_synthetic(seed=0, modalities=("acc", "gyro"))
    with pytest.raises(DataError, match="skeleton"):
        node_dataset(plan_nodes(ds.subject_ids)[0], ds)
    assert np.all(node_dataset(plan_nodes(ds.subject_ids)[1], ds).subjects >= 3)


def test_dev_loso_holds_out_each_of_the_first_six_subjects_in_turn() -> None:
    # Execute
    folds = [plan_protocol("dev-loso", range(1, 9), split=k) for k in range(6)]

    # Assert: fold 0 as documented; every fold tests one subject of 1-6, never loads 7 or 8,
    # and every subject takes part in each fold exactly once
    assert [(p.role.name, p.subjects) for p in folds[0]] == [
        ("A", (2, 3)),
        ("B", (4, 5)),
        ("C", (6,)),
        ("test", (1,)),
    ]
    assert [next(p.subjects for p in f if p.role.name == "test") for f in folds] == [
        (1,),
        (2,),
        (3,),
        (4,),
        (5,),
        (6,),
    ]
    for f in folds:
        used = [s for p in f for s in p.subjects]
        assert sorted(used) == [1, 2, 3, 4, 5, 6]
    assert len({next(p.subjects for p in f if p.role.name == "C") for f in folds}) == 6
    assert protocol_subjects("dev-loso", range(1, 9)) == (1, 2, 3, 4, 5, 6)
    assert protocol_folds("dev-loso") == 6 and protocol_folds("paper") == 4


@pytest.mark.parametrize(
    ("protocol", "split", "message"),
    [
        ("paper", 4, "valid splits: 0..3"),
        ("dev-loso", 6, "valid splits: 0..5"),
        ("lopo", 0, "valid protocols: paper, dev-loso"),
    ],
)
def test_protocol_splits_out_of_range_are_refused(protocol: str, split: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        plan_protocol(protocol, range(1, 9), split=split)
