"""The results documents, typed: a run's ``results.json``, an experiment's cells and results.json.

Every place that assembles a run's results (the coordinator's ServerApp, ``mmbind
simulate``, ``mmbind run``), an experiment cell or an experiment's results.json (``mmbind
experiment``) builds one of these models, and the code that reads a document back (a
recorded cell, a ``--compare`` baseline, the results a deployment left in the store)
parses it through them instead of checking types key by key. (The report is drawn from
documents built here; it stays lenient on its own, so that a partial one still renders.)
The JSON is the models' :meth:`ResultsDocument.to_json`: the keys that were given, in the
order the fields are declared, then any keys the model does not know (kept as they came,
so a newer or older document survives a round trip unchanged).

Only the keys a document was built or loaded with are written: an optional field that
was not given is absent from the JSON, not ``null``; a field given as ``None`` is
written as ``null`` (``binding.pairing_accuracy`` without evaluation labels).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, StrictBool, StrictFloat, StrictInt, ValidationError

from mmbind.errors import DataError

Number = StrictInt | StrictFloat
"""A JSON number: kept as the int or float it is (``1`` stays ``1``, ``1.0`` stays ``1.0``)."""


class ResultsDocument(BaseModel):
    """The base of every results model: unknown keys kept, the JSON as given."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)
    what: ClassVar[str] = "a results document"
    """What the document is, for error messages."""

    def to_json(self) -> dict[str, Any]:
        """The document as JSON-ready Python (the keys given, declared ones first)."""
        return self.model_dump(exclude_unset=True)

    @classmethod
    def from_json(cls, doc: Any, where: str) -> Self:
        """Parse a decoded JSON document; ``where`` names it in the error.

        Raises
        ------
        DataError
            ``doc`` is not a document of this kind (the first problem, on one line).
        """
        try:
            return cls.model_validate(doc)
        except ValidationError as exc:
            raise DataError(f"{where} is not {cls.what} ({_first_error(exc)})") from None

    @classmethod
    def read(cls, path: Path) -> Self:
        """Read and parse ``path``.

        Raises
        ------
        DataError
            The file is unreadable, not JSON, or not a document of this kind.
        """
        try:
            doc = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"{path} is corrupt ({exc})") from None
        return cls.from_json(doc, str(path))


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "the document"
    more = exc.error_count() - 1
    return f"{where}: {err['msg']}" + (f"; and {more} more" if more else "")


# ---------------------------------------------------------------- parts
class MethodScore(ResultsDocument):
    """One method's test metrics; ``seconds`` where the run timed it (not per budget)."""

    accuracy: Number
    macro_f1: Number
    seconds: Number | None = None


class PhaseTime(ResultsDocument):
    """Seconds spent in a phase."""

    seconds: Number


class SearchRequest(ResultsDocument):
    """How one binding request searched (``binding.search.requests``)."""

    node_id: StrictInt
    modality: str
    method: str
    pairs: StrictInt | None = None
    recall_at_1: Number | None = None
    recall_stderr: Number | None = None


class SearchReport(ResultsDocument):
    """``binding.search``: the approximate search and its recall@1 against exact search."""

    method: str
    ann_threshold: StrictInt
    recall_at_1: Number | None = None
    recall_sample: StrictInt | None = None
    requests: list[SearchRequest] | None = None


class LateJoiner(ResultsDocument):
    """A node that connected after phase 1 (``binding.late_joiners``); the rest as bound."""

    node_id: StrictInt
    role: str
    round: StrictInt


class BindingSummary(ResultsDocument):
    """``binding``: the pairs bound, how well, and the diagnostics when labels allowed them."""

    pairs: StrictInt
    pairing_accuracy: Number | None = None
    mean_similarity: Number | None = None
    by: str | None = None
    search: SearchReport | None = None
    late_joiners: list[LateJoiner] | None = None
    pairing_confusion: list[list[Number]] | None = None
    class_similarity: list[list[Number | None]] | None = None


class NodeRecord(ResultsDocument):
    """A node as the run saw it in phase 1 (``nodes``)."""

    node_id: StrictInt | None = None
    role: str
    modalities: list[str] | None = None
    num_samples: StrictInt
    labelled: StrictBool
    trains: StrictBool
    num_classes: StrictInt | None = None


class Dropout(ResultsDocument):
    """A node the run dropped, when and why (``dropouts``)."""

    node_id: StrictInt
    role: str
    phase: str
    message: str
    reason: str


class Traffic(ResultsDocument):
    """Bytes a node received from and sent to the coordinator (``traffic``)."""

    received: StrictInt
    sent: StrictInt


class Attempt(ResultsDocument):
    """One submission of a run (``attempts``)."""

    attempt: str
    resumed_from: str
    last_step: str
    seconds: Number
    phases: dict[str, PhaseTime]


# ---------------------------------------------------------------- a run
class RunResults(ResultsDocument):
    """A run's ``results.json`` (``mmbind simulate``, ``mmbind run``; README, Results).

    The first nine fields are what every run writes; the rest the coordinator adds
    (``run_id``, ``dropouts``, ``traffic``, ``attempts`` always; the others when they
    apply) and ``mmbind run`` adds ``submit_wall_seconds``.
    """

    dataset: str
    engine: str
    methods: dict[str, MethodScore]
    binding: BindingSummary
    phases: dict[str, PhaseTime]
    wall_seconds: Number
    nodes: list[NodeRecord]
    history: dict[str, list[Number]]
    config: dict[str, Any]
    run_id: str | None = None
    dropouts: list[Dropout] | None = None
    label_budgets: dict[str, dict[str, MethodScore]] | None = None
    """Per label budget (as a string, ascending), each method's accuracy and macro-F1."""
    skipped: dict[str, str] | None = None
    traffic: dict[str, Traffic] | None = None
    resumed_from: str | None = None
    attempts: list[Attempt] | None = None
    submit_wall_seconds: Number | None = None

    what: ClassVar[str] = "a run's results document"


# ---------------------------------------------------------------- an experiment cell
class CellKey(ResultsDocument):
    """Which cell of an experiment grid a document records (``cell``)."""

    key: str
    label_budget: StrictInt
    split: StrictInt
    seed: StrictInt
    nodes_per_role: StrictInt


class CentralisedSummary(ResultsDocument):
    """The centralised baseline's binding, test samples and curves (a cell's ``centralised``)."""

    binding: BindingSummary
    test_samples: Number | None = None
    history: dict[str, list[Number]]


class CellPart(ResultsDocument):
    """What runs leave for a cell: a run's results cut to one budget, the centralised run.

    The run's fields are all optional here: a cell only the centralised baseline ran has
    no binding, phases or nodes of a federated run.
    """

    dataset: str | None = None
    engine: str | None = None
    methods: dict[str, MethodScore]
    binding: BindingSummary | None = None
    phases: dict[str, PhaseTime] | None = None
    wall_seconds: Number | None = None
    nodes: list[NodeRecord] | None = None
    history: dict[str, list[Number]] | None = None
    config: dict[str, Any] | None = None
    run_id: str | None = None
    dropouts: list[Dropout] | None = None
    skipped: dict[str, str] | None = None
    traffic: dict[str, Traffic] | None = None
    resumed_from: str | None = None
    attempts: list[Attempt] | None = None
    submit_wall_seconds: Number | None = None
    centralised: CentralisedSummary | None = None

    what: ClassVar[str] = "a cell results document"


class CellDocument(CellPart):
    """An experiment cell file (``OUTPUT/cells/<key>.json``): the parts, the cell, the recipe."""

    cell: CellKey
    recipe: dict[str, Any]


# ---------------------------------------------------------------- an experiment
class MethodSummary(ResultsDocument):
    """One method over a group of cells: means, sample stds (``None`` for one run), runs."""

    accuracy: Number | None
    macro_f1: Number | None
    accuracy_std: Number | None
    macro_f1_std: Number | None
    runs: StrictInt
    seconds: Number | None


class BindingAggregate(ResultsDocument):
    """The binding over a group of cells (those that bound any pairs)."""

    pairs: Number | None
    pairing_accuracy: Number | None
    pairing_accuracy_std: Number | None
    mean_similarity: Number | None
    mean_similarity_std: Number | None
    runs: StrictInt


class CellGroup(ResultsDocument):
    """The cells of one label budget (and nodes-per-role value), summarised."""

    methods: dict[str, MethodSummary]
    binding: BindingAggregate
    runs: StrictInt
    labelled_samples: list[StrictInt]
    wall_seconds: Number
    binding_centralised: BindingAggregate | None = None


class NodesPerRoleGroup(ResultsDocument):
    """Every label budget of one nodes-per-role value."""

    label_budgets: dict[str, CellGroup]


class Headline(ResultsDocument):
    """Which group the top-level ``methods`` and ``binding`` are."""

    label_budget: StrictInt
    nodes_per_role: StrictInt


class CellBinding(ResultsDocument):
    """A cell's binding in the experiment's cell list (``None`` where it bound nothing)."""

    pairs: StrictInt | None
    pairing_accuracy: Number | None
    mean_similarity: Number | None


class CellScore(ResultsDocument):
    """A cell's score of one method in the experiment's cell list."""

    accuracy: Number | None
    macro_f1: Number | None


class CellEntry(CellKey):
    """A cell in the experiment's ``cells`` list: its key, file, time and figures."""

    file: str
    wall_seconds: Number | None
    labelled_samples: StrictInt | None
    methods: dict[str, CellScore]
    binding: CellBinding


class ExperimentResults(ResultsDocument):
    """An experiment's ``results.json`` (``mmbind experiment``; README, Experiments)."""

    dataset: str
    engine: str
    kind: str
    headline: Headline
    methods: dict[str, MethodSummary]
    binding: BindingAggregate
    label_budgets: dict[str, CellGroup]
    binding_centralised: BindingAggregate | None = None
    nodes_per_role: dict[str, NodesPerRoleGroup] | None = None
    std: str
    cells: list[CellEntry]
    wall_seconds: Number
    wall_seconds_per_cell: Number
    grid: dict[str, Any]
    config: dict[str, Any]
    paper: dict[str, Any]
    comparison: dict[str, Any] | None = None
    elapsed_seconds: Number | None = None
    cells_run: list[str] | None = None

    what: ClassVar[str] = "an experiment's results document"
