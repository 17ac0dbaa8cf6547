"""Phase 4 and the way back: partner features to the nodes that lack a modality, and
(end-to-end alignment) the gradients of their losses back to the partners.

:func:`configure_features` asks each partner for the projected features of the rows
bound to it; :func:`route` turns the partners' replies into each requesting node's
partner record; :func:`collect_partner_grads` sends the requesters' gradients back the
way the features came. The coordinator keeps where each routed feature came from
(:data:`Sources`); it is never sent.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence

import numpy as np
import torch
from numpy.typing import NDArray

from mmbind import wire
from mmbind.binding.weights import Weighting
from mmbind.manifest import NodeManifest
from mmbind.methods import MethodSpec
from mmbind.partners import PartnerView
from mmbind.server.binding_service import NodeBinding, tuple_weights
from mmbind.server.workflow.phases import Routed, RoutedGrads, lockstep

Wanted = dict[int, dict[str, dict[str, NDArray[np.int64]]]]
"""Per partner node id, track and modality: the partner's rows asked for, sorted."""
Sources = dict[int, dict[str, tuple[NDArray[np.uint64], NDArray[np.int64]]]]
"""Per requesting node id and modality, parallel to its routed index: the partner node id
and partner row each routed feature came from."""


def configure_features(
    models: Mapping[str, torch.nn.Module],
    tracks: Sequence[MethodSpec],
    bindings: Mapping[str, Sequence[NodeBinding]],
    dropped: Collection[int],
    modalities: Sequence[str],
    norm: wire.Normalization | None,
) -> tuple[Wanted, dict[int, wire.FeaturesRequest]]:
    """One request per partner, carrying the rows every binding track wants of it.

    ``bindings`` are per track name. Partners that dropped out are asked nothing (the
    rows bound to them stay masked). Returns the rows asked for and the requests.
    """
    wanted: Wanted = defaultdict(dict)
    for t in tracks:
        rows: dict[int, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
        for b in bindings[t.name]:
            for p, row in zip(b.partner_node_ids, b.bindings.partner_index, strict=True):
                if int(p) not in dropped:
                    rows[int(p)][b.request.modality].add(int(row))
        for p, mods in rows.items():
            wanted[p][t.name] = {m: np.asarray(sorted(r), dtype=np.int64) for m, r in mods.items()}
    requests = {}
    for p, per_track in wanted.items():
        asked = [t for t in tracks if t.name in per_track]
        requests[p] = wire.FeaturesRequest(
            lockstep(models, asked, modalities), dict(per_track), normalization=norm
        )
    return dict(wanted), requests


def route(
    track: MethodSpec,
    bindings: Sequence[NodeBinding],
    nodes: Sequence[NodeManifest],
    wanted: Wanted,
    features: Mapping[int, Mapping[str, NDArray[np.float32]]],
    weighting: Weighting,
    sources: Sources,
) -> Routed:
    """Each training node's partner record for one track's bindings.

    ``features`` are the partners' replies (per partner node id and modality, in the
    order of ``wanted``). Where each routed feature came from goes into ``sources``.
    """
    routed: Routed = {}
    for n in nodes:
        partners = wire.Partners(tuple_weights(n.num_samples, n.node_id, bindings, weighting))
        for b in bindings:
            if b.request.node_id != n.node_id:
                continue
            m = b.request.modality
            rows: list[NDArray[np.int64]] = []
            feats: list[NDArray[np.float32]] = []
            source_node: list[NDArray[np.uint64]] = []  # Flower node ids are uint64
            source_row: list[NDArray[np.int64]] = []
            for p in np.unique(b.partner_node_ids):
                if int(p) not in features:
                    continue  # the partner dropped out: these rows stay masked
                sel = b.partner_node_ids == p
                asked = wanted[int(p)][track.name][m]
                pos = np.searchsorted(asked, b.bindings.partner_index[sel])
                rows.append(b.bindings.query_index[sel].astype(np.int64))
                feats.append(np.asarray(features[int(p)][m], np.float32)[pos])
                source_node.append(np.full(int(sel.sum()), p, dtype=np.uint64))
                source_row.append(b.bindings.partner_index[sel].astype(np.int64))
            if rows:
                partners.views[m] = PartnerView(np.concatenate(rows), np.concatenate(feats))
                # Where each routed feature came from (kept here, never sent): the
                # partner gradients of end-to-end alignment go back the same way.
                sources.setdefault(n.node_id, {})[m] = (
                    np.concatenate(source_node),
                    np.concatenate(source_row),
                )
        routed[n.node_id] = partners
    return routed


def collect_partner_grads(
    track: MethodSpec,
    replies: Mapping[int, wire.AlignReply],
    sources: Sources,
    dropped: Collection[int],
) -> RoutedGrads:
    """Route the requesters' partner gradients back to the partners that made the features.

    A partner row bound by several requester rows (many-to-one binding) gets the sum of
    their gradients. Returns, per partner node id and modality, its own rows (sorted)
    and their gradients ``(R, proj_dim)``.
    """
    sums: dict[int, dict[str, dict[int, NDArray[np.float64]]]] = defaultdict(
        lambda: defaultdict(dict)
    )
    for node_id, reply in replies.items():
        for m, grad in reply.partner_grads.get(track.name, {}).items():
            source = sources.get(node_id, {}).get(m)
            if source is None or len(source[0]) != len(grad):
                continue  # no routed features of m this round (or a stale reply)
            g = np.asarray(grad, np.float64)
            for p in np.unique(source[0]):
                sel = source[0] == p
                rows, inverse = np.unique(source[1][sel], return_inverse=True)
                acc = np.zeros((len(rows), g.shape[1]))
                np.add.at(acc, inverse, g[sel])
                mine = sums[int(p)][m]
                for r, vec in zip(rows.tolist(), acc, strict=True):
                    mine[r] = mine[r] + vec if r in mine else vec
    out: RoutedGrads = {}
    for p, per_m in sums.items():
        if p in dropped:
            continue
        grads: dict[str, PartnerView] = {}
        for m, by_row in per_m.items():
            order = sorted(by_row)
            grads[m] = PartnerView(
                np.asarray(order, dtype=np.int64),
                np.stack([by_row[r] for r in order]).astype(np.float32),
            )
        out[p] = grads
    return out
