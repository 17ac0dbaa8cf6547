"""Weighted federated averaging of torch state dicts, whole or per modality."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from mmbind.errors import FederationError

State = Mapping[str, torch.Tensor]


def weighted_average(states: Sequence[State], weights: Sequence[float]) -> dict[str, torch.Tensor]:
    """FedAvg (McMahan et al., 2017) of ``states`` with non-negative ``weights``.

    Floating-point entries are averaged with ``weights / sum(weights)``; integer
    buffers (e.g. BatchNorm's ``num_batches_tracked``) take their maximum.

    Raises
    ------
    FederationError
        When there is nothing to average, the key sets differ, or all weights are zero.
    """
    if not states:
        raise FederationError("no node returned weights to aggregate")
    if len(states) != len(weights):
        raise FederationError(f"{len(states)} states but {len(weights)} weights")
    total = float(sum(weights))
    if total <= 0 or any(w < 0 for w in weights):
        raise FederationError(
            f"aggregation weights must be >= 0 with a positive sum; got {list(weights)}"
        )
    keys = set(states[0])
    for s in states[1:]:
        if set(s) != keys:
            diff = sorted(keys.symmetric_difference(s))[:3]
            raise FederationError(f"nodes returned different parameter sets (e.g. {diff})")
    out: dict[str, torch.Tensor] = {}
    for key in states[0]:
        tensors = [s[key] for s in states]
        if tensors[0].is_floating_point():
            acc = torch.zeros_like(tensors[0], dtype=torch.float64)
            for t, w in zip(tensors, weights, strict=True):
                acc += t.to(torch.float64) * (w / total)
            out[key] = acc.to(tensors[0].dtype)
        else:
            out[key] = torch.stack(tensors).max(dim=0).values
    return out


def modality_prefixes(modality: str) -> tuple[str, ...]:
    """State-dict prefixes that belong to ``modality`` in a ``FusionModel``."""
    return (f"encoders.{modality}.", f"heads.{modality}.")


def average_modality(
    global_state: Mapping[str, torch.Tensor],
    states: Sequence[State],
    weights: Sequence[float],
    modality: str,
) -> dict[str, torch.Tensor]:
    """Replace ``modality``'s slice of ``global_state`` by the weighted average of ``states``.

    Only the nodes that trained the modality should be passed: a modality is
    aggregated over its holders only (docs/design.md, phase 2 and 5).
    """
    prefixes = modality_prefixes(modality)
    sliced = [{k: v for k, v in s.items() if k.startswith(prefixes)} for s in states]
    merged = dict(global_state)
    merged.update(weighted_average(sliced, weights))
    return merged
