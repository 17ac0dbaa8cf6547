"""Weighted, incomplete multi-view contrastive loss (MMBind's alignment objective).

MMBind aligns the modalities of pseudo-complete tuples with a supervised-contrastive (SupCon)
style loss in which the views of one tuple are positives of each other and every tuple is
weighted by the quality of its binding (Ouyang et al., "MMBind", SenSys 2025, Sec. 4.3,
Eq. 4-6; SupCon form of Khosla et al., NeurIPS 2020, Eq. 2, with τ = 0.07). The paper's code
zero-fills missing modalities; here missing views are masked out: they are neither anchors,
positives nor negatives.

For present views, with ``z`` the L2-normalised embeddings, an anchor ``a = (i, v)``, its
positives ``P(a) = {(i, u) present : u != v}`` and its contrast set
``A(a) = {(j, u) present : (j, u) != a}``::

    l_a = -1/|P(a)| * sum_{p in P(a)} log( exp(z_a . z_p / τ) / sum_{b in A(a)} exp(z_a . z_b / τ) )

    L = sum_{a : |P(a)| > 0} w_{i(a)} l_a  /  sum_{a : |P(a)| > 0} w_{i(a)}

i.e. a weighted mean over the anchors that have a positive; every such anchor of tuple ``i``
carries the tuple's weight ``w_i``. Scaling all weights by a constant leaves ``L`` unchanged and
a zero weight removes the tuple's anchors (its views still serve as negatives of other anchors).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmbind.errors import ConfigError, DataError, ShapeError

__all__ = ["WeightedMultiViewContrastiveLoss"]


class WeightedMultiViewContrastiveLoss(nn.Module):
    """SupCon-form contrastive loss over incomplete multi-view tuples with per-tuple weights.

    Parameters
    ----------
    temperature : float
        Softmax temperature τ, finite and > 0 (the paper: 0.07).

    Raises
    ------
    ConfigError
        If ``temperature`` is not a finite positive number.
    """

    def __init__(self, temperature: float = 0.07) -> None:
        super().__init__()
        if (
            isinstance(temperature, bool)
            or not isinstance(temperature, int | float)
            or not math.isfinite(temperature)
            or temperature <= 0
        ):
            raise ConfigError(f"temperature must be a finite number > 0; got {temperature!r}")
        self.temperature: float = float(temperature)

    def forward(self, embeddings: Tensor, present: Tensor, weights: Tensor) -> Tensor:
        """Compute the weighted loss of a batch.

        Parameters
        ----------
        embeddings : Tensor, shape (B, V, D)
            View ``v`` of tuple ``i`` (need not be normalised; normalised here). Entries of
            missing views are ignored but must be finite (fill them with zeros).
        present : BoolTensor, shape (B, V)
            Which views exist.
        weights : Tensor, shape (B,)
            Binding quality of each tuple, finite and >= 0 (natural tuples: 1). Treated as
            constants (no gradient flows into them).

        Returns
        -------
        Tensor, scalar
            ``L`` above. When no anchor has a positive, or all contributing anchors weigh 0,
            a zero that is still connected to ``embeddings`` (``.backward()`` works and gives
            zero gradients).

        Raises
        ------
        ShapeError
            On inconsistent shapes or a non-boolean ``present``.
        DataError
            On non-finite embeddings or weights, or negative weights.
        """
        if embeddings.ndim != 3:
            raise ShapeError(f"embeddings must have shape (B, V, D); got {tuple(embeddings.shape)}")
        b, v, _ = embeddings.shape
        if present.dtype != torch.bool or tuple(present.shape) != (b, v):
            raise ShapeError(
                f"present must be a bool tensor of shape {(b, v)}; "
                f"got {present.dtype} {tuple(present.shape)}"
            )
        if weights.ndim != 1 or weights.shape[0] != b:
            raise ShapeError(f"weights must have shape ({b},); got {tuple(weights.shape)}")
        if not embeddings.is_floating_point() or not bool(torch.isfinite(embeddings).all()):
            raise DataError("embeddings must be finite floating-point values")
        w = weights.detach().to(embeddings.dtype)
        if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
            raise DataError("weights must be finite and >= 0")

        tuple_id = torch.arange(b, device=embeddings.device).unsqueeze(1).expand(b, v)[present]
        z = F.normalize(embeddings[present], dim=-1)  # (N, D), N present views
        n = z.shape[0]
        logits = z @ z.T / self.temperature  # (N, N)
        self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
        logits = logits.masked_fill(self_mask, float("-inf"))
        log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        positive = (tuple_id.unsqueeze(0) == tuple_id.unsqueeze(1)) & ~self_mask
        n_pos = positive.sum(dim=1)
        # Zero the -inf diagonal (and everything else off the positives) before summing.
        pos_log_prob = torch.where(positive, log_prob, torch.zeros_like(log_prob)).sum(dim=1)
        contributing = n_pos > 0
        anchor_loss = -pos_log_prob / n_pos.clamp(min=1)  # (N,)
        anchor_w = w[tuple_id] * contributing.to(w.dtype)
        total_w = anchor_w.sum()
        if not bool(total_w > 0):
            return (embeddings * 0.0).sum()
        return (anchor_w * anchor_loss).sum() / total_w
