"""Process helpers: Flower's executables are found without an activated environment."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from mmbind.processes import scripts_path


def test_scripts_path_puts_this_interpreters_scripts_first(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: a PATH that does not name the environment (as with `.venv/bin/mmbind-server`)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    # Execute
    path = scripts_path()
    # Assert
    assert path.split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert path.endswith("/usr/bin:/bin")
    # Flower's processes start these by name: the SuperLink, then a SuperNode.
    for name in ("flower-superexec", "flwr-clientapp", "flower-supernode"):
        found = shutil.which(name, path=path)
        assert found is not None and Path(found).parent == Path(sys.executable).parent, name
