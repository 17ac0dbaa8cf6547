"""Shared fixtures of the binding tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _single_threaded(one_torch_thread: None) -> None:
    """Every binding test runs on one torch thread."""
