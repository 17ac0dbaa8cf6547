"""Where the tests find UTD-MHAD's official files, and the mark of the tests that need them.

``MMBIND_UTD_MHAD_DIR``, else ``../shared/data/utd_mhad`` beside the checkout. Tests that
read the files skip, saying where they looked, when ``Inertial/`` is not there.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

UTD_DIR = Path(
    os.environ.get(
        "MMBIND_UTD_MHAD_DIR",
        Path(__file__).resolve().parents[1].parent / "shared" / "data" / "utd_mhad",
    )
)
needs_utd = pytest.mark.skipif(
    not (UTD_DIR / "Inertial").is_dir(),
    reason=f"UTD-MHAD not found at {UTD_DIR} (set MMBIND_UTD_MHAD_DIR to its folder)",
)
