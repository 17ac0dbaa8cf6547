"""Process helpers: Flower's executables are found without an activated environment, and
a child started with ``die_with_parent`` dies with its parent, even on SIGKILL."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
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


PARENT = """
import sys, time
from mmbind.processes import ManagedProcess
child = ManagedProcess("sleeper", [sys.executable, "-c", "import time; time.sleep(600)"],
                       die_with_parent=sys.argv[1] == "1")
print(child.pid, flush=True)
time.sleep(600)
"""


def alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("die_with_parent", [True, False])
def test_a_child_started_to_die_with_its_parent_does_even_on_sigkill(
    die_with_parent: bool,
) -> None:
    # Prepare: a parent (as mmbind-server) that started a child (as the SuperLink)
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, "1" if die_with_parent else "0"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        # Execute: SIGKILL to the parent alone
        parent.kill()
        parent.wait(10)
        # Assert: the kernel ended the child; without the option it lives on
        deadline = time.monotonic() + (10 if die_with_parent else 1)
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert alive(child) is not die_with_parent
    finally:
        if alive(child):
            os.kill(child, signal.SIGKILL)
        parent.stdout.close()
