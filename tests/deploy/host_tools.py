"""Running the host's own tools (Debian's docker-compose, docker) from the test process.

Flower's Ray backend writes this interpreter's whole ``sys.path`` into ``PYTHONPATH``
(``RayBackend.init_ray``: ``os.environ["PYTHONPATH"] = os.pathsep.join(sys.path)``) so its
Ray workers see the same modules; after any in-process simulation in the same pytest run
(``tests/cli/test_determinism.py``) every subprocess inherits it. A system tool written in
Python (``/usr/bin/docker-compose`` runs ``/usr/bin/python3``) then imports the virtual
environment's ``requests``/``urllib3`` beside Debian's ``pyOpenSSL`` and crashes
(``AttributeError: module 'lib' has no attribute 'GEN_EMAIL'``).
"""

from __future__ import annotations

import os

#: Variables that point a Python interpreter at another environment's modules.
PYTHON_ENV_VARS = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV")


def system_tool_env() -> dict[str, str]:
    """This process's environment without what would make a system Python import our modules.

    Returns
    -------
    dict[str, str]
        ``os.environ`` less :data:`PYTHON_ENV_VARS`, for ``subprocess.run(..., env=...)``.
    """
    return {k: v for k, v in os.environ.items() if k not in PYTHON_ENV_VARS}
