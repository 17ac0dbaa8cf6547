"""The paper's figures, read from ``paper.toml`` beside this module (the one place they live).

:data:`PAPER` is what results.json records under ``"paper"`` and what the report compares
against: ``table3`` and ``table4_label_binding`` (the paper's tables, accuracies as fractions)
and ``paper_code_split0`` (the paper's code run on our split 0; docs/design.md, "The reference
protocol"). :data:`PAPER_LABEL_BUDGETS` are the protocol's label budgets.
"""

from __future__ import annotations

import tomllib
from importlib.resources import files
from typing import Any

__all__ = ["PAPER", "PAPER_LABEL_BUDGETS", "PAPER_SECTIONS"]

#: The sections of paper.toml that results.json records, in its order.
PAPER_SECTIONS = ("source", "table3", "table4_label_binding", "paper_code_split0")

_DATA: dict[str, Any] = tomllib.loads(files("mmbind.lab").joinpath("paper.toml").read_text())

#: The paper's figures (see the module docstring).
PAPER: dict[str, Any] = {key: _DATA[key] for key in PAPER_SECTIONS}

#: UTD-MHAD label budgets of the paper (216 = all of C's labelled samples).
PAPER_LABEL_BUDGETS: tuple[int, ...] = tuple(int(b) for b in _DATA["protocol"]["label_budgets"])
