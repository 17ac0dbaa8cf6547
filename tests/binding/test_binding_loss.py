"""Tests of the weighted multi-view contrastive loss against a naive reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmbind.binding.weighted_contrastive import WeightedMultiViewContrastiveLoss
from mmbind.errors import ConfigError, DataError, ShapeError


def reference_loss(emb: np.ndarray, present: np.ndarray, weights: np.ndarray, tau: float) -> float:
    """Naive loops over anchors and positives, straight from the module docstring."""
    b, v, _ = emb.shape
    anchors = [(i, u) for i in range(b) for u in range(v) if present[i, u]]
    z = {a: emb[a] / max(np.linalg.norm(emb[a]), 1e-12) for a in anchors}
    num = 0.0
    den = 0.0
    for a in anchors:
        positives = [p for p in anchors if p[0] == a[0] and p != a]
        if not positives:
            continue
        denom = sum(math.exp(float(z[a] @ z[c]) / tau) for c in anchors if c != a)
        terms = [math.log(math.exp(float(z[a] @ z[p]) / tau) / denom) for p in positives]
        num += weights[a[0]] * -float(np.mean(terms))
        den += weights[a[0]]
    return num / den if den > 0 else 0.0


def random_case(
    seed: int, b: int = 6, v: int = 3, d: int = 5
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    emb = torch.randn(b, v, d, generator=gen, dtype=torch.float64)
    present = torch.rand(b, v, generator=gen) < 0.7
    weights = torch.rand(b, generator=gen, dtype=torch.float64)
    return emb, present, weights


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("tau", [0.07, 0.5])
def test_matches_naive_reference(seed: int, tau: float) -> None:
    # Prepare
    emb, present, weights = random_case(seed)
    # Execute
    got = WeightedMultiViewContrastiveLoss(tau)(emb, present, weights)
    # Assert
    want = reference_loss(emb.numpy(), present.numpy(), weights.numpy(), tau)
    assert float(got) == pytest.approx(want, rel=1e-9, abs=1e-9)


def test_zero_weight_removes_the_tuples_anchors_but_keeps_its_negatives() -> None:
    emb, _, weights = random_case(1)
    present = torch.ones(6, 3, dtype=torch.bool)
    weights[2] = 0.0
    got = WeightedMultiViewContrastiveLoss(0.1)(emb, present, weights)
    want = reference_loss(emb.numpy(), present.numpy(), weights.numpy(), 0.1)
    # Tuple 2's anchors are gone: the loss differs from the one with a positive weight.
    weights_pos = weights.clone()
    weights_pos[2] = 1.0
    other = WeightedMultiViewContrastiveLoss(0.1)(emb, present, weights_pos)
    assert float(got) == pytest.approx(want, rel=1e-9)
    assert float(got) != pytest.approx(float(other), rel=1e-6)


def test_zero_weight_equals_weighted_mean_without_that_tuple_as_anchor() -> None:
    # Prepare: with one tuple weighted 0, the loss is the weighted mean of the others' anchors.
    emb, _, weights = random_case(2)
    present = torch.ones(6, 3, dtype=torch.bool)
    loss = WeightedMultiViewContrastiveLoss(0.2)
    zeroed = weights.clone()
    zeroed[0] = 0.0
    # Execute: the same anchors' losses via a one-hot weighting per tuple.
    per_tuple = []
    for i in range(6):
        onehot = torch.zeros(6, dtype=torch.float64)
        onehot[i] = 1.0
        per_tuple.append(float(loss(emb, present, onehot)))
    # Assert
    want = sum(float(zeroed[i]) * per_tuple[i] for i in range(6)) / float(zeroed.sum())
    assert float(loss(emb, present, zeroed)) == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("scale", [0.01, 3.0, 1000.0])
def test_scaling_all_weights_leaves_loss_unchanged(scale: float) -> None:
    emb, present, weights = random_case(3)
    loss = WeightedMultiViewContrastiveLoss()
    assert float(loss(emb, present, weights * scale)) == pytest.approx(
        float(loss(emb, present, weights)), rel=1e-9
    )


def test_masked_view_equals_removed_view() -> None:
    # Prepare
    emb, present, weights = random_case(4, b=5, v=3)
    present[:, 1] = False
    emb_garbage = emb.clone()
    emb_garbage[:, 1] = 123.0  # masked entries are ignored
    loss = WeightedMultiViewContrastiveLoss(0.3)
    # Execute
    masked = loss(emb_garbage, present, weights)
    removed = loss(emb[:, [0, 2]], present[:, [0, 2]], weights)
    # Assert
    assert float(masked) == pytest.approx(float(removed), rel=1e-12)


def test_backward_gives_finite_grads_and_a_step_reduces_the_loss() -> None:
    # Prepare
    emb, present, weights = random_case(5, b=8, v=3, d=16)
    emb = emb.float().requires_grad_(True)
    loss_fn = WeightedMultiViewContrastiveLoss(0.1)
    # Execute
    before = loss_fn(emb, present, weights.float())
    before.backward()
    assert emb.grad is not None
    grad = emb.grad.clone()
    with torch.no_grad():
        after = loss_fn(emb - 0.05 * grad, present, weights.float())
    # Assert
    assert torch.isfinite(grad).all()
    assert float(grad[~present].abs().sum()) == 0.0
    assert float(after) < float(before.detach())


def test_natural_complete_tuples_aligned_give_low_loss() -> None:
    # Views of a tuple identical and tuples orthogonal: near-zero loss.
    emb = torch.eye(4).unsqueeze(1).repeat(1, 3, 1)
    loss = WeightedMultiViewContrastiveLoss(0.07)(
        emb, torch.ones(4, 3, dtype=torch.bool), torch.ones(4)
    )
    assert float(loss) == pytest.approx(math.log(2), abs=1e-4)  # two positives share the mass


@pytest.mark.parametrize(
    "present",
    [
        torch.zeros(3, 2, dtype=torch.bool),
        torch.tensor([[True, False], [True, False], [False, True]]),
        torch.tensor([[True, False], [False, False], [False, False]]),
    ],
)
def test_no_positive_gives_zero_with_grad(present: torch.Tensor) -> None:
    emb = torch.randn(3, 2, 4, requires_grad=True)
    loss = WeightedMultiViewContrastiveLoss()(emb, present, torch.ones(3))
    assert float(loss.detach()) == 0.0
    assert loss.grad_fn is not None
    loss.backward()
    assert emb.grad is not None and torch.equal(emb.grad, torch.zeros_like(emb))


def test_all_contributing_weights_zero_gives_zero() -> None:
    emb = torch.randn(3, 2, 4, requires_grad=True)
    present = torch.ones(3, 2, dtype=torch.bool)
    loss = WeightedMultiViewContrastiveLoss()(emb, present, torch.zeros(3))
    loss.backward()
    assert float(loss.detach()) == 0.0


@pytest.mark.parametrize("tau", [0.0, -1.0, float("nan"), float("inf"), True, "0.1"])
def test_bad_temperature(tau: object) -> None:
    with pytest.raises(ConfigError, match="temperature"):
        WeightedMultiViewContrastiveLoss(tau)  # type: ignore[arg-type]


def test_bad_inputs() -> None:
    loss = WeightedMultiViewContrastiveLoss()
    emb = torch.randn(4, 3, 8)
    ok = torch.ones(4, 3, dtype=torch.bool)
    w = torch.ones(4)
    nan_emb = emb.clone()
    nan_emb[0, 0, 0] = float("nan")
    with pytest.raises(DataError):
        loss(nan_emb, ok, w)
    with pytest.raises(DataError, match="weights"):
        loss(emb, ok, torch.tensor([1.0, -0.1, 1.0, 1.0]))
    with pytest.raises(DataError, match="weights"):
        loss(emb, ok, torch.tensor([1.0, float("inf"), 1.0, 1.0]))
    with pytest.raises(ShapeError, match="embeddings"):
        loss(emb[0], ok, w)
    with pytest.raises(ShapeError, match="present"):
        loss(emb, ok[:, :2], w)
    with pytest.raises(ShapeError, match="present"):
        loss(emb, ok.float(), w)
    with pytest.raises(ShapeError, match="weights"):
        loss(emb, ok, torch.ones(5))
