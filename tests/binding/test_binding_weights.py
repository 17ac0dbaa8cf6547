"""Tests of the binding weightings."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mmbind.binding.weights import (
    PowerWeighting,
    SimilarityWeighting,
    SoftmaxWeighting,
    ThresholdWeighting,
    Weighting,
    get_weighting,
)
from mmbind.errors import ConfigError, DataError, ShapeError

ALL: list[tuple[str, dict[str, Any]]] = [
    ("similarity", {}),
    ("log", {}),
    ("power", {"p": 2.0}),
    ("power", {"p": 0.5}),
    ("threshold", {"threshold": 0.8}),
    ("softmax", {"temperature": 0.1}),
    ("uniform", {}),
]

similarities = arrays(np.float32, st.integers(0, 30), elements=st.floats(-1.0, 1.0, width=32))


@pytest.mark.parametrize(("name", "params"), ALL)
@settings(max_examples=40, deadline=None)
@given(s=similarities)
def test_range_dtype_and_monotonicity(name: str, params: dict[str, Any], s: np.ndarray) -> None:
    # Prepare
    weighting = get_weighting(name, **params)
    order = np.argsort(s, kind="stable")
    # Execute
    w = weighting(s)
    # Assert
    assert isinstance(weighting, Weighting)
    assert w.shape == s.shape and w.dtype == np.float32
    assert np.all((w >= 0.0) & (w <= 1.0))
    assert np.all(np.diff(w[order]) >= 0.0)


def test_hand_values() -> None:
    s = np.array([-0.5, 0.0, 0.5, 0.9, 1.2], dtype=np.float32)
    np.testing.assert_allclose(SimilarityWeighting()(s), [0.0, 0.0, 0.5, 0.9, 1.0])
    np.testing.assert_allclose(PowerWeighting(2.0)(s), [0.0, 0.0, 0.25, 0.81, 1.0], rtol=1e-6)
    np.testing.assert_array_equal(ThresholdWeighting(0.5)(s), [0, 0, 1, 1, 1])
    soft = SoftmaxWeighting(0.5)(s)
    assert soft.max() == 1.0
    np.testing.assert_allclose(soft, np.exp((s - 1.2) / 0.5), rtol=1e-6)
    np.testing.assert_array_equal(get_weighting("uniform")(s), np.ones(5))
    # the paper's log(s) / 2 + 1, clipped: 0 below e^-2, 0.5 at e^-1, 1 at 1 and above
    e = np.array([0.1, np.exp(-2), np.exp(-1), 0.8, 1.0, 1.2], dtype=np.float32)
    np.testing.assert_allclose(
        get_weighting("log")(e), [0.0, 0.0, 0.5, np.log(0.8) / 2 + 1, 1.0, 1.0], atol=1e-6
    )
    assert SoftmaxWeighting(0.1)(np.zeros(0, np.float32)).shape == (0,)


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ConfigError) as info:
        get_weighting("cosine")
    for name in ("similarity", "power", "threshold", "softmax", "uniform"):
        assert name in str(info.value)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("power", {}),
        ("power", {"p": 0.0}),
        ("power", {"p": float("nan")}),
        ("threshold", {"threshold": 1.5}),
        ("softmax", {"temperature": -1.0}),
        ("similarity", {"p": 2.0}),
    ],
)
def test_bad_parameters(name: str, params: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        get_weighting(name, **params)


def test_bad_similarity_input() -> None:
    with pytest.raises(DataError):
        SimilarityWeighting()(np.array([0.1, np.nan]))
    with pytest.raises(ShapeError):
        SimilarityWeighting()(np.ones((2, 2)))
