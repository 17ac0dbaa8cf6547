"""The import-linter contracts in pyproject.toml cover every module they are meant to."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _contracts() -> dict[str, dict[str, object]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {c["name"]: c for c in config["contracts"]}


def test_core_contract_lists_every_module_of_the_core_package() -> None:
    # Prepare
    core = next(c for name, c in _contracts().items() if name.startswith("the shared core"))
    modules = {f"mmbind.{p.stem}" for p in (ROOT / "mmbind").glob("*.py") if p.stem != "__init__"}

    # Execute
    listed = set(core["source_modules"])

    # Assert
    assert listed == modules, f"add to / remove from the contract: {sorted(modules ^ listed)}"


def test_lab_exceptions_name_only_existing_modules() -> None:
    # Prepare
    runtime = next(c for name, c in _contracts().items() if name.startswith("the coordinator"))

    # Execute
    sources = {rule.split(" -> ")[0] for rule in runtime["ignore_imports"]}

    # Assert
    for module in sources:
        path = ROOT / "server" / f"{module.removeprefix('mmbind.server.')}.py"
        assert path.is_file(), f"{module} listed as a lab exception but {path} does not exist"
