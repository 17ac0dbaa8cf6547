"""Node layouts: which nodes a run has, what each holds and does (a TOML file).

::

    name = "paper"
    shared_modality = "acc"       # or: binding = "label"

    [[nodes]]
    name = "A"
    modalities = ["acc", "skeleton"]
    subjects = [1, 2]             # or a string of ids and ranges: "1-2", "1-3,7"

    [[nodes]]
    name = "C"
    modalities = ["skeleton", "gyro"]
    subjects = "5-6"
    labelled = true               # its labels train the classifier

    [[nodes]]
    name = "test"
    modalities = ["skeleton", "gyro"]
    subjects = "7-8"
    test = true                   # evaluation only (held-out subjects)

A layout is refused, before any data is read or any training starts, when it cannot run:
no labelled training node, no test node, a test node holding a modality no training node
trains, a subject on two nodes, a subject or modality the data set lacks, or (binding by
modality) fewer than two training nodes sharing the shared modality, or none of them holding
a modality another lacks. The paper's layout (split 0 of docs/design.md) ships as
``paper`` (:data:`BUILTIN_LAYOUTS`).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mmbind.errors import BindingError, ConfigError, MMBindError
from mmbind.modalities import check_modality_name

from .partition import NodePlan, Role

__all__ = ["BUILTIN_LAYOUTS", "LayoutNode", "NodeLayout", "layout_path", "parse_subjects"]

#: Layouts shipped with mmbind, by name.
BUILTIN_LAYOUTS: dict[str, Path] = {"paper": Path(__file__).parent / "layouts" / "paper.toml"}


def layout_path(value: str) -> Path:
    """The file of a layout: a shipped one by name (``paper``), else a path."""
    return BUILTIN_LAYOUTS.get(value, Path(value).expanduser())


def parse_subjects(value: object, where: str) -> tuple[int, ...]:
    """Subject ids from a list of integers or a string of ids and ranges (``"1-3,7"``).

    Raises
    ------
    ConfigError
        Anything else, an empty range or a subject given twice (the message names ``where``).
    """
    ids: list[int] = []
    if isinstance(value, str):
        for part in (p.strip() for p in value.split(",")):
            m = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
            if m is None:
                raise ConfigError(f"{where}: {part!r} is not a subject id or range like 1-3")
            lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
            if hi < lo:
                raise ConfigError(f"{where}: range {part!r} is empty; write it low-high")
            ids.extend(range(lo, hi + 1))
    elif isinstance(value, list) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        ids = list(value)
    else:
        raise ConfigError(f"{where}: {value!r}; give a list of ids or a string like '1-3,7'")
    if not ids:
        raise ConfigError(f"{where}: no subject; a node needs at least one")
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{where}: a subject is given twice in {value!r}")
    return tuple(sorted(ids))


@dataclass(frozen=True)
class LayoutNode:
    """One node of a layout.

    Attributes
    ----------
    name : str
        Unique in the layout.
    modalities : tuple[str, ...]
        What it holds.
    subjects : tuple[int, ...]
        Whose recordings it holds.
    labelled : bool
        Its labels train the classifier.
    test : bool
        Evaluation only.
    """

    name: str
    modalities: tuple[str, ...]
    subjects: tuple[int, ...]
    labelled: bool = False
    test: bool = False

    @property
    def role(self) -> Role:
        """The node's :class:`Role` (a test node is labelled: evaluation scores its labels)."""
        return Role(
            self.name, self.modalities, labelled=self.labelled or self.test, trains=not self.test
        )


@dataclass(frozen=True)
class NodeLayout:
    """A run's nodes and how they bind.

    Attributes
    ----------
    name : str
    nodes : tuple[LayoutNode, ...]
        In node order (partition ids ``0..``).
    binding : {"modality", "label"}
        Bind through a shared modality, or pair samples of the same class.
    shared_modality : str
        The binding modality (``binding = "modality"``).
    source : str
        The file, for messages.
    """

    name: str
    nodes: tuple[LayoutNode, ...]
    binding: Literal["modality", "label"]
    shared_modality: str
    source: str = "layout"

    @classmethod
    def read(cls, value: str | Path) -> NodeLayout:
        """Read a layout file (or a shipped layout by name).

        Raises
        ------
        ConfigError
            The file is missing or not TOML, or a field is missing or invalid (one line
            naming the file and the field).
        """
        path = layout_path(str(value))
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            shipped = ", ".join(BUILTIN_LAYOUTS)
            raise ConfigError(
                f"layout {value!s}: no such file (shipped layouts: {shipped})"
            ) from None
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"layout {path}: cannot read it as TOML ({exc})") from None
        return cls.from_dict(doc, str(path))

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], source: str = "layout") -> NodeLayout:
        """Parse a layout document (see the module docstring).

        Raises
        ------
        ConfigError
            A missing or invalid field.
        """
        allowed = {"name", "binding", "shared_modality", "nodes"}
        unknown = sorted(set(doc) - allowed)
        if unknown:
            raise ConfigError(f"{source}: {unknown[0]}: unknown key; valid: {sorted(allowed)}")
        binding = doc.get("binding", "modality")
        if binding not in ("modality", "label"):
            raise ConfigError(f"{source}: binding: {binding!r}; use 'modality' or 'label'")
        shared = doc.get("shared_modality", "")
        if binding == "modality" and not (isinstance(shared, str) and shared):
            raise ConfigError(
                f"{source}: shared_modality: missing; name the modality nodes bind through "
                "(or set binding = 'label')"
            )
        raw = doc.get("nodes")
        if not isinstance(raw, list) or not raw:
            raise ConfigError(f"{source}: nodes: none; add [[nodes]] tables")
        nodes = []
        node_keys = {"name", "modalities", "subjects", "labelled", "test"}
        for i, table in enumerate(raw):
            where = f"{source}: nodes[{i}]"
            if not isinstance(table, Mapping):
                raise ConfigError(f"{where}: not a table")
            bad = sorted(set(table) - node_keys)
            if bad:
                raise ConfigError(f"{where}.{bad[0]}: unknown key; valid: {sorted(node_keys)}")
            name = table.get("name")
            if not isinstance(name, str) or not name.strip():
                raise ConfigError(f"{where}.name: missing; give each node a name")
            mods = table.get("modalities")
            if not isinstance(mods, list) or not mods:
                raise ConfigError(f"{where}.modalities: missing; list what node {name} holds")
            try:  # names only: the data set's modalities are checked by check()
                modalities = tuple(dict.fromkeys(check_modality_name(str(m)) for m in mods))
            except MMBindError as exc:
                raise ConfigError(f"{where}.modalities: {exc}") from None
            flags = {}
            for key in ("labelled", "test"):
                value = table.get(key, False)
                if not isinstance(value, bool):
                    raise ConfigError(f"{where}.{key}: {value!r}; use true or false")
                flags[key] = value
            if flags["labelled"] and flags["test"]:
                raise ConfigError(
                    f"{where}: node {name} is labelled and test; a test node only evaluates"
                )
            nodes.append(
                LayoutNode(
                    name.strip(),
                    modalities,
                    parse_subjects(table.get("subjects"), f"{where}.subjects"),
                    **flags,
                )
            )
        return cls(
            str(doc.get("name", Path(source).stem)),
            tuple(nodes),
            binding,
            str(shared) if binding == "modality" else "",
            source,
        )

    def check(
        self, modalities: Sequence[str] | None = None, subjects: Sequence[int] | None = None
    ) -> None:
        """Refuse a layout that cannot run (see the module docstring), saying why.

        Parameters
        ----------
        modalities, subjects : sequence, optional
            The data set's (``None``: not checked).

        Raises
        ------
        BindingError
            The layout cannot bind or cannot be evaluated.
        ConfigError
            Duplicate node names, a subject on two nodes, or a subject or modality the data
            set lacks.
        """
        where = f"layout {self.source}"
        names = [n.name for n in self.nodes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"{where}: node name {dupes[0]!r} is used twice; names must differ")
        owner: dict[int, str] = {}
        for node in self.nodes:
            for s in node.subjects:
                if s in owner:
                    raise ConfigError(
                        f"{where}: subject {s} is on nodes {owner[s]} and {node.name}; a "
                        "subject's recordings belong to one node"
                    )
                owner[s] = node.name
        if subjects is not None:
            absent = sorted(set(owner) - set(subjects))
            if absent:
                raise ConfigError(
                    f"{where}: subject {absent[0]} (node {owner[absent[0]]}) is not in the data "
                    f"set; its subjects: {list(subjects)}"
                )
        if modalities is not None:
            for node in self.nodes:
                lacking = [m for m in node.modalities if m not in modalities]
                if lacking:
                    raise ConfigError(
                        f"{where}: node {node.name} holds {lacking[0]!r}, which the data set "
                        f"lacks; its modalities: {', '.join(modalities)}"
                    )
        train = [n for n in self.nodes if not n.test]
        if not any(n.labelled for n in train):
            raise BindingError(
                f"{where}: no labelled training node; fine-tuning needs one "
                "(labelled = true on a node that is not a test node)"
            )
        tests = [n for n in self.nodes if n.test]
        if not tests:
            raise BindingError(f"{where}: no test node; evaluation needs one (test = true)")
        trained = {m for n in train for m in n.modalities}
        for node in tests:
            untrained = [m for m in node.modalities if m not in trained]
            if untrained:
                raise BindingError(
                    f"{where}: test node {node.name} holds {untrained[0]!r}, which no "
                    "training node holds, so no model learns it; give it to a training node "
                    "or drop it from the test node"
                )
        if self.binding == "modality":
            shared = self.shared_modality
            holders = [n for n in train if shared in n.modalities]
            if len(holders) < 2:
                raise BindingError(
                    f"{where}: {len(holders)} training node(s) hold the shared modality "
                    f"{shared!r}; binding needs two or more nodes sharing it "
                    f"({', '.join(n.name + ': ' + ','.join(n.modalities) for n in train)})"
                )
            others = [set(n.modalities) - {shared} for n in holders]
            if not any(a - b for a in others for b in others):
                raise BindingError(
                    f"{where}: the nodes sharing {shared!r} hold the same other modalities; "
                    "binding pairs a node with partners holding a modality it lacks"
                )

    def plans(self) -> list[NodePlan]:
        """The nodes as :class:`NodePlan` (partition ids in file order)."""
        return [NodePlan(i, n.role, n.subjects) for i, n in enumerate(self.nodes)]
