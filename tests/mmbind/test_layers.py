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


def _module_path(module: str) -> Path:
    """Where ``mmbind.<folder>.<name>`` lives in the repository (the pyproject package-dir)."""
    folder, _, rest = module.removeprefix("mmbind.").partition(".")
    return ROOT / folder / f"{rest.replace('.', '/')}.py"


def test_ignored_imports_name_only_existing_modules() -> None:
    # Prepare
    rules = [rule for c in _contracts().values() for rule in c.get("ignore_imports", [])]

    # Execute
    sources = {rule.split(" -> ")[0] for rule in rules}

    # Assert
    assert sources, "no contract lists an exception any more: drop this test"
    for module in sources:
        path = _module_path(module)
        assert path.is_file(), f"{module} listed as an exception but {path} does not exist"


def test_only_the_cli_may_import_the_lab() -> None:
    # Prepare
    contracts = _contracts()
    lab = next(c for name, c in contracts.items() if name.startswith("the lab is on top"))
    runtime = next(c for name, c in contracts.items() if name.startswith("the coordinator"))

    # Execute
    exceptions = {rule for c in (lab, runtime) for rule in c.get("ignore_imports", [])}

    # Assert
    assert exceptions == {"mmbind.server.cli -> mmbind.lab.**"}


def test_lab_contract_covers_every_package_and_core_module_below_the_lab() -> None:
    # Prepare
    lab = next(c for name, c in _contracts().items() if name.startswith("the lab is on top"))
    packages = {
        f"mmbind.{p.parent.name}"
        for p in ROOT.glob("*/__init__.py")
        if p.parent.name not in {"mmbind", "lab", "tests", "bench"}
    }
    core = {f"mmbind.{p.stem}" for p in (ROOT / "mmbind").glob("*.py") if p.stem != "__init__"}

    # Execute
    listed = set(lab["source_modules"])

    # Assert
    assert listed == packages | core, (
        f"add to / remove from the contract: {sorted(listed ^ (packages | core))}"
    )
