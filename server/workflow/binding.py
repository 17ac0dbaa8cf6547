"""Phase 3: shared-modality embeddings up, bindings made, and the binding's report.

:func:`configure_embed` asks the nodes for their embeddings; the workflow hands them
to the binding service, which binds; :func:`report` describes the binding for
results.json (with its class-similarity and pairing-confusion matrices when the
nodes sent evaluation labels), :func:`search_report` how an approximate binding
searched and its recall. :func:`check_search` refuses, before any training, a run
that would bind approximately without faiss installed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from numpy.typing import NDArray

from mmbind import wire
from mmbind.binding import ann
from mmbind.binding.diagnostics import class_similarity, pairing_confusion
from mmbind.errors import ConfigError
from mmbind.manifest import NodeManifest
from mmbind.server.binding_service import (
    BindRequest,
    NodeBinding,
    binding_report,
    plan_requests,
    request_pairs,
)


class BindingServiceAPI(Protocol):
    """What the workflow needs of a binding service: in-process or over gRPC."""

    def register(self, manifest: NodeManifest) -> None: ...

    @property
    def nodes(self) -> list[NodeManifest]: ...

    def upload(
        self, node_id: int, embeddings: NDArray[np.float32], labels: NDArray[np.int64] | None = None
    ) -> None: ...

    def bind(
        self, requests: Sequence[BindRequest], *, by: str = "modality", seed: int = 0
    ) -> list[NodeBinding]: ...


def configure_embed(
    model: torch.nn.Module,
    uploaders: Sequence[int],
    modalities: Sequence[str],
    shared: str,
    kinds: Sequence[str],
    evaluation_labels: bool,
    norm: wire.Normalization | None,
) -> dict[int, wire.EmbedRequest]:
    """Each uploader embeds its ``shared`` windows with ``model``'s (pretrained) encoders.

    Label binding (``"label"`` in ``kinds``) needs the nodes' label ids as well.
    """
    request = wire.EmbedRequest(
        tuple(modalities),
        model.state_dict(),
        shared,
        labels="label" in kinds,
        evaluation_labels=evaluation_labels,
        normalization=norm,
    )
    return {n: request for n in uploaders}


def report(
    primary: Sequence[NodeBinding],
    kind: str,
    requests: Sequence[BindRequest],
    embeddings: Mapping[int, NDArray[np.float32]],
    eval_labels: Mapping[int, NDArray[np.int64]],
    num_classes: int,
) -> dict[str, Any]:
    """results.json's ``binding``: pairs, pairing accuracy, similarity; the diagnostics.

    ``primary`` are the bindings of the run's first binding ``kind``; ``eval_labels``
    the labels nodes sent only to score the binding (none: no accuracy, no matrices).
    """
    out: dict[str, Any] = dict(binding_report(primary, eval_labels))
    out["by"] = kind
    if eval_labels and all(b.request.node_id in eval_labels for b in primary):
        true: list[NDArray[np.int64]] = []
        bound_to: list[NDArray[np.int64]] = []
        for b in primary:
            for p in np.unique(b.partner_node_ids):
                sel = b.partner_node_ids == p
                true.append(eval_labels[b.request.node_id][b.bindings.query_index[sel]])
                bound_to.append(eval_labels[int(p)][b.bindings.partner_index[sel]])
        if true:
            out["pairing_confusion"] = pairing_confusion(
                np.concatenate(true), np.concatenate(bound_to), num_classes
            ).tolist()
        pairs = [
            (embeddings[r.node_id], eval_labels[r.node_id], embeddings[p], eval_labels[p])
            for r in requests
            for p in r.partners
            if r.node_id in embeddings and p in embeddings
        ]
        out["class_similarity"] = class_similarity(pairs, num_classes).tolist()
    return out


def check_search(nodes: Sequence[NodeManifest], shared: str, threshold: int) -> None:
    """Refuse, at phase 1, a binding that would go approximate without faiss installed.

    Raises
    ------
    ConfigError
        Some request binds more than ``threshold`` pairs and faiss (the extra ``ann``) is
        missing.
    """
    sizes = {n.node_id: n.num_samples for n in nodes}
    largest = max(
        (request_pairs(sizes[r.node_id], [sizes[p] for p in r.partners])
         for r in plan_requests(nodes, shared)),
        default=0,
    )  # fmt: skip
    if largest > threshold and not ann.faiss_available():
        raise ConfigError(
            f"binding would search an approximate index ({largest} pairs > ann-threshold "
            f"{threshold}), which needs faiss: {ann.INSTALL_HINT}, or raise ann-threshold "
            "to bind exactly"
        )


def search_report(bindings: Sequence[NodeBinding], threshold: int) -> dict[str, Any]:
    """results.json's ``binding.search`` (how each request searched, and the recall), when
    some request searched approximately; else nothing (``{}``).

    ``recall_at_1`` is the approximate requests' recall@1 against exact search, averaged
    over the query samples checked (each request checks a sample of its queries).
    """
    approx = [b for b in bindings if b.search is not None]
    if not approx:
        return {}
    checked = sum(b.search.sample for b in approx if b.search is not None)
    hits = sum(b.search.recall * b.search.sample for b in approx if b.search is not None)
    return {
        "search": {
            "method": "approximate",
            "ann_threshold": int(threshold),
            "recall_at_1": round(hits / checked, 6) if checked else None,
            "recall_sample": int(checked),
            "requests": [
                {
                    "node_id": b.request.node_id,
                    "modality": b.request.modality,
                    "method": b.search.method if b.search else "exact",
                    "pairs": b.search.pairs if b.search else None,
                    "recall_at_1": round(b.search.recall, 6) if b.search else None,
                    "recall_stderr": round(b.search.stderr, 6) if b.search else None,
                }
                for b in bindings
            ],
        }
    }
