"""Node roles and subject-disjoint partitioning of a dataset over federated nodes.

The paper's protocol (docs/design.md, "The reference protocol") has four roles, each holding a
different modality pair and a disjoint set of subjects:

=====  =================  ========  ======  =======================================
role   modalities         labelled  trains  purpose
=====  =================  ========  ======  =======================================
A      acc, skeleton      no        yes     unlabelled, binds to B through acc
B      acc, gyro          no        yes     unlabelled, binds to A through acc
C      skeleton, gyro     yes       yes     the few labelled, naturally paired samples
test   skeleton, gyro     (yes)     no      held-out subjects, evaluation only
=====  =================  ========  ======  =======================================

Subjects are sorted and cut into ``len(roles)`` consecutive groups of equal size (the
first ``len(subjects) % len(roles)`` groups get one subject more when the division is
not exact). Split ``k`` rotates the groups by ``k``: role ``i`` gets group
``(i + k) % len(roles)``. For the 8 UTD-MHAD subjects, split 0 is docs/design.md's
A = {1, 2}, B = {3, 4}, C = {5, 6}, test = {7, 8}; split 1 is A = {3, 4},
B = {5, 6}, C = {7, 8}, test = {1, 2}; split 4 equals split 0 again.

With ``nodes_per_role = n > 1`` each role is spread over ``n`` nodes:

* if the role has at least ``n`` subjects, its subjects are cut into ``n``
  consecutive non-empty groups, one per node;
* otherwise every node holds a single subject and the ``n`` nodes are spread over
  the role's subjects as evenly as possible; the nodes sharing a subject split its
  trials: the subject's distinct trial ids, sorted, are dealt round-robin
  (:attr:`NodePlan.trial_shard`). Samples stay disjoint; a node whose share turns out
  empty (fewer trials than nodes) makes :func:`node_dataset` raise ``DataError``.

No subject is ever in two roles. Nodes are numbered 0.. in role order (all A nodes,
then B, C, test).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mmbind.errors import ConfigError, DataError
from mmbind.modalities import parse_modalities

from .dataset import MultimodalDataset

__all__ = [
    "DEV_SUBJECTS",
    "PAPER_ROLES",
    "PROTOCOLS",
    "ROLE_A",
    "ROLE_B",
    "ROLE_C",
    "ROLE_TEST",
    "NodePlan",
    "Role",
    "node_dataset",
    "plan_loso",
    "plan_nodes",
    "plan_protocol",
    "protocol_folds",
    "protocol_subjects",
    "role_by_name",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Role:
    """What a node holds and does.

    Attributes
    ----------
    name : str
        Role name, e.g. ``"A"``.
    modalities : tuple[str, ...]
        Modalities the node holds (registry names).
    labelled : bool
        Whether the node may use its labels for training.
    trains : bool
        Whether the node takes part in training (``False``: evaluation only).
    """

    name: str
    modalities: tuple[str, ...]
    labelled: bool
    trains: bool = True

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("a role needs a non-empty name")
        object.__setattr__(self, "modalities", parse_modalities(self.modalities))


ROLE_A = Role("A", ("acc", "skeleton"), labelled=False, trains=True)
ROLE_B = Role("B", ("acc", "gyro"), labelled=False, trains=True)
ROLE_C = Role("C", ("skeleton", "gyro"), labelled=True, trains=True)
ROLE_TEST = Role("test", ("skeleton", "gyro"), labelled=True, trains=False)

#: The paper's four roles, in node order.
PAPER_ROLES: tuple[Role, ...] = (ROLE_A, ROLE_B, ROLE_C, ROLE_TEST)


def role_by_name(name: str, roles: Sequence[Role] = PAPER_ROLES) -> Role:
    """Look a role up by name.

    Raises
    ------
    ConfigError
        No role has that name; the message lists the valid names.
    """
    for role in roles:
        if role.name == name:
            return role
    raise ConfigError(f"unknown role {name!r}; valid roles: {', '.join(r.name for r in roles)}")


@dataclass(frozen=True)
class NodePlan:
    """One node of a run: its role and its share of the data.

    Attributes
    ----------
    node : int
        0-based node index.
    role : Role
        The node's role.
    subjects : tuple[int, ...]
        Subject ids whose samples the node holds (sorted).
    trial_shard : tuple[int, int] or None
        ``(index, count)`` when several nodes share one subject: the node keeps the
        trials at positions ``index, index + count, ...`` of the subject's sorted
        distinct trial ids. ``None``: all trials.
    """

    node: int
    role: Role
    subjects: tuple[int, ...]
    trial_shard: tuple[int, int] | None = None


def _check_int(name: str, value: object, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        bound = "" if minimum is None else f" >= {minimum}"
        raise ConfigError(f"{name} must be an integer{bound}, got {value!r}")
    if minimum is not None and int(value) < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {int(value)}")
    return int(value)


def plan_nodes(
    subjects: Sequence[int],
    *,
    split: int = 0,
    nodes_per_role: int = 1,
    roles: Sequence[Role] = PAPER_ROLES,
) -> list[NodePlan]:
    """Assign subjects to roles and nodes (see the module docstring for the rule).

    Parameters
    ----------
    subjects : sequence of int
        Distinct subject ids; their order does not matter (they are sorted).
    split : int
        Rotation of the subject groups over the roles, ``>= 0``.
    nodes_per_role : int
        Nodes per role, ``>= 1``.
    roles : sequence of Role
        Roles in node order; names must be distinct.

    Returns
    -------
    list[NodePlan]
        ``len(roles) * nodes_per_role`` plans, node indices ``0..``, grouped by role.

    Raises
    ------
    ConfigError
        Duplicate or non-integer subjects, fewer subjects than roles, no roles,
        duplicate role names, a negative split or ``nodes_per_role < 1``.
    """
    split = _check_int("split", split, 0)
    nodes_per_role = _check_int("nodes_per_role", nodes_per_role, 1)
    roles = tuple(roles)
    if not roles:
        raise ConfigError("plan_nodes needs at least one role")
    names = [r.name for r in roles]
    if len(set(names)) != len(names):
        raise ConfigError(f"role names must be distinct, got {names}")
    subs = sorted(_check_int("subject id", s) for s in subjects)
    if len(set(subs)) != len(subs):
        dupes = sorted({s for s in subs if subs.count(s) > 1})
        raise ConfigError(f"subject ids must be distinct; repeated: {dupes}")
    if len(subs) < len(roles):
        raise ConfigError(
            f"{len(subs)} subjects cannot be divided over {len(roles)} roles "
            f"({', '.join(names)}); give at least {len(roles)} subjects"
        )

    groups = [list(g) for g in np.array_split(np.array(subs, dtype=np.int64), len(roles))]
    plans: list[NodePlan] = []
    for i, role in enumerate(roles):
        group = [int(s) for s in groups[(i + split) % len(roles)]]
        for share, shard in _spread(group, nodes_per_role):
            plans.append(NodePlan(len(plans), role, tuple(share), shard))
    logger.debug(
        "split %d: %s",
        split,
        "; ".join(f"node {p.node} {p.role.name} {p.subjects} {p.trial_shard}" for p in plans),
    )
    return plans


def _spread(subjects: list[int], nodes: int) -> list[tuple[list[int], tuple[int, int] | None]]:
    """Cut one role's subjects over ``nodes`` nodes: by subject, else by trial shards."""
    if nodes == 1:
        return [(subjects, None)]
    if len(subjects) >= nodes:
        return [([int(s) for s in g], None) for g in np.array_split(np.array(subjects), nodes)]
    out: list[tuple[list[int], tuple[int, int] | None]] = []
    for subject, idx in zip(subjects, np.array_split(np.arange(nodes), len(subjects)), strict=True):
        count = len(idx)
        for j in range(count):
            out.append(([subject], (j, count) if count > 1 else None))
    return out


def node_dataset(plan: NodePlan, dataset: MultimodalDataset) -> MultimodalDataset:
    """The part of ``dataset`` a node holds: its subjects (and trial shard), its role's modalities.

    Labels are kept even for unlabelled roles (label binding and evaluation need the
    class ids); training code must honour :attr:`Role.labelled`.

    Raises
    ------
    DataError
        The dataset lacks one of the role's modalities or one of the node's subjects,
        or the node's trial shard is empty.
    """
    ds = dataset.with_modalities(plan.role.modalities).for_subjects(plan.subjects)
    if plan.trial_shard is None:
        return ds
    index, count = plan.trial_shard
    keep = np.zeros(len(ds), dtype=bool)
    for subject in plan.subjects:
        of_subject = ds.subjects == subject
        trial_ids = np.unique(ds.trials[of_subject])
        keep |= of_subject & np.isin(ds.trials, trial_ids[index::count])
    if not keep.any():
        raise DataError(
            f"node {plan.node} (role {plan.role.name}) gets trial shard {index + 1} of {count} "
            f"of subjects {list(plan.subjects)}, but they have fewer than {count} distinct "
            "trials; use fewer nodes per role"
        )
    return ds.select(keep)


#: Subject layouts of a simulated federation: the paper's rotation of 2/2/2/2 subject groups
#: (``"paper"``, split 0 = docs/design.md's split) and the leave-one-subject-out development
#: protocol over the first six subjects (``"dev-loso"``): recipes are chosen on it, so the
#: paper protocol's split-0 test subjects (7 and 8) are never loaded while choosing.
PROTOCOLS: tuple[str, ...] = ("paper", "dev-loso")

#: How many subjects the development protocol uses (the first ones, sorted).
DEV_SUBJECTS = 6


def protocol_subjects(protocol: str, subjects: Sequence[int]) -> tuple[int, ...]:
    """The subjects a protocol loads: all of them, or the first six for ``"dev-loso"``.

    Raises
    ------
    ConfigError
        Unknown protocol, or too few subjects for it.
    """
    subs = tuple(sorted(int(s) for s in subjects))
    if protocol == "paper":
        return subs
    if protocol == "dev-loso":
        if len(subs) < DEV_SUBJECTS:
            raise ConfigError(
                f"protocol 'dev-loso' needs {DEV_SUBJECTS} subjects; the dataset has {len(subs)}"
            )
        return subs[:DEV_SUBJECTS]
    raise ConfigError(f"unknown protocol {protocol!r}; valid protocols: {', '.join(PROTOCOLS)}")


def protocol_folds(protocol: str, roles: Sequence[Role] = PAPER_ROLES) -> int:
    """Distinct splits (folds) of a protocol: 4 rotations of the paper's roles, 6 LOSO folds."""
    if protocol == "dev-loso":
        return DEV_SUBJECTS
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {protocol!r}; valid protocols: {', '.join(PROTOCOLS)}")
    return len(roles)


def plan_loso(
    subjects: Sequence[int],
    *,
    fold: int,
    nodes_per_role: int = 1,
    roles: Sequence[Role] = PAPER_ROLES,
) -> list[NodePlan]:
    """Leave-one-subject-out layout: subject ``fold`` (0-based, in sorted order) is the test.

    The other subjects, rotated by ``fold`` so that each takes every role in turn, are dealt
    to the training roles in order: two to each but the last training role, which (the
    labelled node C in the paper's layout) gets the rest. For six subjects and the paper's
    roles, fold 0 is A = {2, 3}, B = {4, 5}, C = {6}, test = {1}.

    Raises
    ------
    ConfigError
        Bad ``fold`` or ``nodes_per_role``, no test role, or too few subjects.
    """
    subs = sorted(_check_int("subject id", s) for s in subjects)
    fold = _check_int("split", fold, 0)
    nodes_per_role = _check_int("nodes_per_role", nodes_per_role, 1)
    if fold >= len(subs):
        raise ConfigError(
            f"split {fold} does not exist in a leave-one-subject-out protocol over "
            f"{len(subs)} subjects; valid splits: 0..{len(subs) - 1}"
        )
    roles = tuple(roles)
    train = [r for r in roles if r.trains]
    tests = [r for r in roles if not r.trains]
    if len(tests) != 1 or not train:
        raise ConfigError("leave-one-subject-out needs training roles and exactly one test role")
    others = [s for i, s in enumerate(subs) if i != fold]
    others = others[fold:] + others[:fold]
    if len(others) < 2 * (len(train) - 1) + 1:
        raise ConfigError(
            f"{len(subs)} subjects are too few for leave-one-subject-out over {len(roles)} roles"
        )
    shares = {r.name: sorted(others[2 * i : 2 * i + 2]) for i, r in enumerate(train[:-1])}
    shares[train[-1].name] = sorted(others[2 * (len(train) - 1) :])
    shares[tests[0].name] = [subs[fold]]
    plans: list[NodePlan] = []
    for role in roles:
        for share, shard in _spread(shares[role.name], nodes_per_role):
            plans.append(NodePlan(len(plans), role, tuple(share), shard))
    return plans


def plan_protocol(
    protocol: str,
    subjects: Sequence[int],
    *,
    split: int = 0,
    nodes_per_role: int = 1,
    roles: Sequence[Role] = PAPER_ROLES,
) -> list[NodePlan]:
    """The node plans of ``protocol`` (:data:`PROTOCOLS`) for one split.

    ``"paper"``: :func:`plan_nodes` (split ``0..len(roles)-1``); ``"dev-loso"``:
    :func:`plan_loso` over the first six subjects (split = fold ``0..5``).

    Raises
    ------
    ConfigError
        Unknown protocol or a split outside the protocol's range (the message gives it).
    """
    subs = protocol_subjects(protocol, subjects)
    if protocol == "dev-loso":
        return plan_loso(subs, fold=split, nodes_per_role=nodes_per_role, roles=roles)
    split = _check_int("split", split, 0)
    if split >= len(roles):
        raise ConfigError(
            f"split {split} does not exist: the {len(roles)} roles' subject groups rotate, so "
            f"split {split} would repeat split {split % len(roles)}; valid splits: "
            f"0..{len(roles) - 1}"
        )
    return plan_nodes(subs, split=split, nodes_per_role=nodes_per_role, roles=roles)
