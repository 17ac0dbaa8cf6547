"""``mmbind experiment``: a resumable grid of simulations and its aggregate results.

A grid is methods × label budgets × subject splits × seeds × nodes per role. One
*cell* is one (label budget, split, seed, nodes per role) point: it runs every
federated method of the grid in **one** :func:`~mmbind.lab.simulate.simulate`
call (the methods share phase 1 and run in lockstep), plus
``run_centralised`` when ``"mmbind_centralised"`` is asked for.

Resumability
------------
Each finished cell is written to ``OUTPUT/cells/<key>.json`` atomically (a ``.tmp``
file, then :func:`os.replace`), holding the cell's results document (the shape of
``mmbind simulate``'s results.json) plus its coordinates (``"cell"``) and the
recipe it ran with (``"recipe"``). Running the same command again loads the
finished cells and runs only the missing ones:

* a cell whose file lacks some asked methods runs only those methods and merges
  them into its file (so adding ``mmbind_centralised`` later runs just that);
* a cell recorded with a different recipe (any run-config value other than the
  cell coordinates, the method list and the data folder; a value the record
  predates is compared with its default) is a :class:`ConfigError` naming the
  differing keys; ``fresh=True`` (``--fresh``) runs every cell again and
  overwrites the files;
* an unreadable or corrupt cell file, or one that is not a cell document (it is
  parsed as a :class:`~mmbind.results_model.CellDocument`), is a :class:`DataError`
  naming the file and the first wrong field (it is never silently overwritten):
  delete it to run that cell again, or pass ``--fresh``.

Aggregation
-----------
Accuracy and macro-F1 are averaged per method over the seeds × splits of each
(nodes per role, label budget) group; the spread is the *sample* standard
deviation (``ddof=1``), ``null`` when a group has a single run. Binding pairing
accuracy and mean similarity are aggregated the same way.

The package: :mod:`.grid` (methods, cells, each cell's run config), :mod:`.cells` (cell files
and documents), :mod:`.run` (:func:`run_experiment`), :mod:`.aggregate` (results.json and
comparisons). The paper's figures are :mod:`mmbind.lab.paper`'s.
"""

from __future__ import annotations

from mmbind.lab.experiment.aggregate import aggregate, compare_cells, labelled_samples, summarise
from mmbind.lab.experiment.cells import cell_path, load_cell, write_json_atomic
from mmbind.lab.experiment.grid import (
    CELL_KEYS,
    CENTRALISED_MODULE,
    METHOD_ORDER,
    METHOD_TITLES,
    VOLATILE_KEYS,
    Cell,
    Grid,
    available_methods,
    centralised_available,
    default_methods,
    federated_methods_known,
    order_methods,
    parse_int_list,
    parse_methods,
    recipe_mismatch,
    recipe_of,
)
from mmbind.lab.experiment.run import ExperimentOutcome, run_experiment, run_group
from mmbind.lab.paper import PAPER, PAPER_LABEL_BUDGETS
from mmbind.methods import CENTRALISED

__all__ = [
    "CELL_KEYS",
    "CENTRALISED",
    "CENTRALISED_MODULE",
    "METHOD_ORDER",
    "METHOD_TITLES",
    "PAPER",
    "PAPER_LABEL_BUDGETS",
    "VOLATILE_KEYS",
    "Cell",
    "ExperimentOutcome",
    "Grid",
    "aggregate",
    "available_methods",
    "cell_path",
    "centralised_available",
    "compare_cells",
    "default_methods",
    "federated_methods_known",
    "labelled_samples",
    "load_cell",
    "order_methods",
    "parse_int_list",
    "parse_methods",
    "recipe_mismatch",
    "recipe_of",
    "run_experiment",
    "run_group",
    "summarise",
    "write_json_atomic",
]
