"""Federated channel moments: merging equals computing on the concatenation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmbind.client.data.normalization import (
    STD_EPSILON,
    ChannelMoments,
    dataset_moments,
    merge_normalization,
    normalize,
)
from mmbind.client.data.synthetic import make_synthetic
from mmbind.errors import ConfigError, DataError, ShapeError
from mmbind.modalities import get_modality, normalization_groups


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 6), min_size=1, max_size=5),
    channels=st.integers(1, 4),
    offset=st.floats(-100, 100),
    scale=st.floats(0.01, 100),
    seed=st.integers(0, 2**16),
)
def test_merged_moments_equal_moments_of_concatenation(
    sizes: list[int], channels: int, offset: float, scale: float, seed: int
) -> None:
    # Prepare
    rng = np.random.default_rng(seed)
    parts = [offset + scale * rng.normal(size=(n, 7, channels)) for n in sizes]

    # Execute
    merged = ChannelMoments.sum(ChannelMoments.from_windows(p) for p in parts)
    whole = ChannelMoments.from_windows(np.concatenate(parts))

    # Assert
    assert merged.count == whole.count == 7 * sum(sizes)
    np.testing.assert_allclose(merged.mean, whole.mean, rtol=1e-9, atol=1e-9 * scale)
    np.testing.assert_allclose(merged.std, whole.std, rtol=1e-6, atol=1e-6 * scale)
    np.testing.assert_allclose(
        whole.std, np.concatenate(parts).reshape(-1, channels).std(axis=0), rtol=1e-6
    )


def test_dict_round_trip_is_plain_and_exact() -> None:
    m = ChannelMoments.from_windows(np.arange(24, dtype=np.float32).reshape(2, 4, 3))
    d = m.to_dict()
    assert isinstance(d["total"], list) and isinstance(d["total"][0], float)
    back = ChannelMoments.from_dict(d)
    assert back.count == m.count
    np.testing.assert_array_equal(back.total, m.total)
    np.testing.assert_array_equal(back.total_sq, m.total_sq)


def test_from_dict_rejects_missing_keys() -> None:
    with pytest.raises(ConfigError, match="total_sq"):
        ChannelMoments.from_dict({"count": 1, "total": [1.0]})


def test_constant_channel_std_is_floored() -> None:
    m = ChannelMoments.from_windows(np.ones((3, 5, 2)))
    np.testing.assert_array_equal(m.std, [STD_EPSILON, STD_EPSILON])


def test_merge_rejects_channel_mismatch_and_empty_sum() -> None:
    a = ChannelMoments.from_windows(np.ones((1, 2, 3)))
    b = ChannelMoments.from_windows(np.ones((1, 2, 4)))
    with pytest.raises(ShapeError, match="3 and 4 channels"):
        a.merge(b)
    with pytest.raises(ConfigError):
        ChannelMoments.sum([])
    with pytest.raises(DataError, match="no data"):
        _ = ChannelMoments.zeros(3).mean


def test_from_windows_rejects_nan() -> None:
    w = np.zeros((2, 3, 1))
    w[1, 1, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        ChannelMoments.from_windows(w)


def test_normalize_gives_zero_mean_unit_std_float32() -> None:
    # Prepare
    ds = make_synthetic(subjects=[1, 2], seed=3)
    moments = dataset_moments(ds)

    # Execute
    out = normalize(ds.windows["gyro"], moments["gyro"].mean, moments["gyro"].std)

    # Assert
    assert out.dtype == np.float32 and out.shape == ds.windows["gyro"].shape
    np.testing.assert_allclose(out.reshape(-1, 3).mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(out.reshape(-1, 3).std(axis=0), 1.0, atol=1e-4)


def test_normalize_rejects_bad_stats() -> None:
    w = np.zeros((2, 4, 3))
    with pytest.raises(ShapeError, match=r"expected \(3,\)"):
        normalize(w, np.zeros(2), np.ones(3))
    with pytest.raises(ConfigError, match="> 0"):
        normalize(w, np.zeros(3), np.array([1.0, 0.0, 1.0]))


def test_normalization_groups_follow_the_geometry() -> None:
    # Prepare
    acc, skeleton = get_modality("acc"), get_modality("skeleton")

    # Execute / Assert: an IMU's axes share one scale; skeleton axes are pooled over joints
    assert normalization_groups(acc, "channel") == [[0], [1], [2]]
    assert normalization_groups(acc, "axis") == [[0, 1, 2]]
    assert normalization_groups(acc, "modality") == [[0, 1, 2]]
    groups = normalization_groups(skeleton, "axis")
    assert len(groups) == 3 and groups[0] == list(range(0, 60, 3))
    assert sorted(c for g in groups for c in g) == list(range(60))
    assert normalization_groups(skeleton, "modality") == [list(range(60))]
    with pytest.raises(ConfigError, match="valid schemes are: channel, axis, modality"):
        normalization_groups(acc, "joint")


@pytest.mark.parametrize("scheme", ["channel", "axis", "modality"])
def test_merge_normalization_equals_pooled_statistics_of_the_union(scheme: str) -> None:
    # Prepare: two nodes' skeleton windows with joint-dependent offsets
    rng = np.random.default_rng(3)
    offsets = rng.normal(size=60) * 2
    parts = [offsets + rng.normal(size=(n, 40, 60)) * (1 + np.arange(60) % 3) for n in (5, 8)]
    union = np.concatenate(parts).reshape(-1, 60)
    groups = normalization_groups(get_modality("skeleton"), scheme)

    # Execute
    stats = merge_normalization(
        {"skeleton": [ChannelMoments.from_windows(p) for p in parts]}, scheme
    )
    mean, std = stats["skeleton"]

    # Assert: every channel carries its group's statistics over the union of the nodes
    assert mean.shape == std.shape == (60,) and mean.dtype == np.float32
    for g in groups:
        values = union[:, g]
        np.testing.assert_allclose(mean[g], values.mean(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(std[g], values.std(), rtol=1e-5)


def test_channel_scheme_is_the_plain_per_channel_statistic_bit_for_bit() -> None:
    rng = np.random.default_rng(4)
    parts = [ChannelMoments.from_windows(rng.normal(size=(6, 9, 3))) for _ in range(3)]
    merged = ChannelMoments.sum(parts)
    mean, std = merge_normalization({"acc": parts}, "channel")["acc"]
    np.testing.assert_array_equal(mean, merged.mean.astype(np.float32))
    np.testing.assert_array_equal(std, merged.std.astype(np.float32))


def test_pooled_rejects_groups_that_miss_a_channel() -> None:
    m = ChannelMoments.from_windows(np.ones((2, 3, 4)))
    with pytest.raises(ShapeError, match="exactly once"):
        m.pooled([[0, 1], [2]])
