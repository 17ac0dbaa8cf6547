"""Nodes that join after binding: checked, bound incrementally, aligned from the next round.

A node that first appears in the roster after phase 3 (in a deployment, a SuperNode that
connects late) is asked for its manifest at the start of the next align round. The run
takes it when :func:`refusal` finds nothing against it; it then embeds its shared modality
with the pretrained encoders and is bound by a :class:`LateBinder`:

* its own samples against the bound nodes holding what it lacks (new pairs only);
* the bound nodes' samples against it, where it holds what they lack: a bound sample's
  binding moves to the joiner only where the joiner holds a closer sample (ties: the
  lower node id), so the bindings equal a full binding of every node, and no pair
  between two bound nodes is recomputed or changed.

Label binding (random partners of the same class) binds the joiner's own samples only;
the bound nodes keep theirs. The joiner's normalisation is the run's (merged from the
phase-1 nodes), and its moments are not merged in: the other nodes' models would move.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mmbind.binding.incremental import BindingTable, IncrementalBinder, NodeId
from mmbind.binding.pairing import Bindings
from mmbind.manifest import NodeManifest, NodeReport
from mmbind.server.binding_service import BindRequest, NodeBinding


def refusal(
    report: NodeReport,
    nodes: Mapping[int, NodeManifest],
    modalities: Sequence[str],
    num_classes: int,
    datasets: Sequence[str],
    needs_paired_data: bool,
) -> str | None:
    """Why the run cannot take a late node reporting ``report`` (None: it can).

    ``nodes`` are the run's nodes so far (dropped ones included: names stay taken),
    ``modalities`` the run's model layout, ``datasets`` those of its nodes;
    ``needs_paired_data`` whether a method of the run needs naturally paired data on
    every training node (the upper bound).
    """
    if report.role in {n.role for n in nodes.values()}:
        return f"its name {report.role!r} is taken (give each mmbind-client its own --name)"
    if report.num_classes != num_classes:
        return f"it has {report.num_classes} classes, the run {num_classes}"
    if report.dataset is not None and datasets and report.dataset not in datasets:
        return f"it holds {report.dataset!r} data, the run {','.join(datasets)!r}"
    extra = sorted(set(report.modalities) - set(modalities))
    if extra:
        return f"it holds {extra}, which the run's model (built at phase 1) has no encoder for"
    if needs_paired_data and report.trains and not report.paired_data:
        return "it holds no naturally paired data, which a method of the run needs"
    return None


def _table(binding: NodeBinding | None, num_samples: int, members: Sequence[int]) -> BindingTable:
    """A node's top-1 binding table over ``members`` (rows bound elsewhere: unbound)."""
    sims = np.full((num_samples, 1), -np.inf, np.float32)
    partner = np.full((num_samples, 1), -1, np.int64)
    idx = np.full((num_samples, 1), -1, np.int64)
    if binding is not None:
        b = binding.bindings
        # Partners not among members (dropped since) leave their rows unbound here.
        lut = np.asarray(
            [members.index(p) if p in members else -1 for p in binding.request.partners], np.int64
        )
        position = lut[b.partner_node] if len(b) else np.zeros(0, np.int64)
        kept = position >= 0
        rows = b.query_index[kept]
        sims[rows, 0] = b.similarity[kept]
        partner[rows, 0] = position[kept]
        idx[rows, 0] = b.partner_index[kept]
    return BindingTable(sims, partner, idx, tuple(members))


class LateBinder:
    """A run's modality bindings, kept so that a late node binds against the bound ones.

    One :class:`~mmbind.binding.incremental.IncrementalBinder` per modality a node may
    lack, over the training nodes holding the shared modality; two nodes bind when
    exactly one of them holds that modality. The binders start from the bindings of
    phase 3 (:meth:`~mmbind.binding.incremental.IncrementalBinder.from_tables`: no
    pair computed again).

    Parameters
    ----------
    nodes : sequence of NodeManifest
        The run's active nodes.
    shared : str
        The binding modality.
    modalities : sequence of str
        The run's modalities.
    embeddings : mapping int -> ndarray (N_i, d)
        The uploaded shared-modality embeddings of the bound nodes (L2-normalised).
    bindings : sequence of NodeBinding
        Their modality bindings.
    """

    def __init__(
        self,
        nodes: Sequence[NodeManifest],
        shared: str,
        modalities: Sequence[str],
        embeddings: Mapping[int, NDArray[np.float32]],
        bindings: Sequence[NodeBinding],
    ) -> None:
        members = [
            n for n in nodes if n.trains and shared in n.modalities and n.node_id in embeddings
        ]
        self._sizes = {n.node_id: n.num_samples for n in members}
        self._holds: dict[str, dict[int, bool]] = {}
        self._binders: dict[str, IncrementalBinder] = {}
        for m in modalities:
            if m == shared:
                continue
            holds = {n.node_id: m in n.modalities for n in members}
            mine = {b.request.node_id: b for b in bindings if b.request.modality == m}
            ids = sorted(holds)
            tables: dict[NodeId, BindingTable] = {
                n: _table(mine.get(n), self._sizes[n], ids)
                for n, holder in holds.items()
                if not holder
            }
            self._holds[m] = holds
            embs: dict[NodeId, NDArray[np.float32]] = {n: embeddings[n] for n in holds}
            self._binders[m] = IncrementalBinder.from_tables(
                embs, tables, complementary=_one_holds(holds), normalized=True
            )

    def add(
        self,
        joiner: NodeManifest,
        embeddings: NDArray[np.float32],
        bindings: Sequence[NodeBinding],
    ) -> tuple[list[NodeBinding], dict[str, Any]]:
        """Bind ``joiner`` (its embeddings ``(N, d)``); return the bindings and what changed.

        Returns
        -------
        list of NodeBinding
            ``bindings`` with the joiner's own appended and those of the bound nodes whose
            samples moved to it replaced (their other rows kept as they were).
        dict
            ``pairs`` (the joiner's bindings), ``rebound`` (bound nodes' samples now bound
            to it) and ``similarities`` (pairs scored: the joiner's samples times the
            bound nodes' it binds with).
        """
        out = list(bindings)
        where = {(b.request.node_id, b.request.modality): i for i, b in enumerate(out)}
        me = joiner.node_id
        pairs = rebound = computed = 0
        self._sizes[me] = joiner.num_samples
        for m, binder in self._binders.items():
            holds = self._holds[m]
            holds[me] = m in joiner.modalities
            before = binder.pairs_computed
            binder.add_node(me, embeddings, normalized=True)
            computed += binder.pairs_computed - before
            holders = {n for n, h in holds.items() if h}
            lackers = [me] if not holds[me] else [n for n, h in holds.items() if not h]
            for node in lackers:
                table = binder.bindings(node)
                first = table.partner[:, 0]
                rows = np.flatnonzero(
                    first >= 0 if node == me else first == table.node_ids.index(me)
                )
                if rows.size == 0:
                    continue
                old = out[where[(node, m)]] if (node, m) in where else None
                partners = holders | set(old.request.partners if old else ())
                new = _rebind(
                    old,
                    BindRequest(node, m, tuple(sorted(partners))),
                    rows,
                    [int(table.node_ids[j]) for j in first[rows]],  # u64 ids: no int64
                    table.idx[rows, 0],
                    table.sims[rows, 0],
                )
                if (node, m) in where:
                    out[where[(node, m)]] = new
                else:
                    where[(node, m)] = len(out)
                    out.append(new)
                if node == me:
                    pairs += int(rows.size)
                else:
                    rebound += int(rows.size)
        return out, {"pairs": pairs, "rebound": rebound, "similarities": computed}


def _one_holds(holds: Mapping[int, bool]) -> Callable[[NodeId, NodeId], bool]:
    """Two nodes bind when exactly one of them holds the modality (``holds`` grows)."""

    def complementary(a: NodeId, b: NodeId) -> bool:
        return holds[int(a)] != holds[int(b)]

    return complementary


def _rebind(
    old: NodeBinding | None,
    request: BindRequest,
    rows: NDArray[np.int64],
    partner_ids: Sequence[int],
    partner_index: NDArray[np.int64],
    similarity: NDArray[np.float32],
) -> NodeBinding:
    """``old`` (or no binding) with ``rows`` bound anew; its other rows kept bit for bit.

    ``request.partners`` are the partners after the join; the kept rows' partner
    positions are mapped to it.
    """
    position = {p: i for i, p in enumerate(request.partners)}
    query = np.zeros(0, np.int64)
    node = np.zeros(0, np.int64)
    index = np.zeros(0, np.int64)
    sims = np.zeros(0, np.float32)
    if old is not None:
        remap = np.asarray([position[p] for p in old.request.partners], np.int64)
        keep = ~np.isin(old.bindings.query_index, rows)
        query = old.bindings.query_index[keep]
        node = remap[old.bindings.partner_node[keep]]
        index = old.bindings.partner_index[keep]
        sims = old.bindings.similarity[keep]
    new_node = np.asarray([position[int(p)] for p in partner_ids], np.int64)
    query = np.concatenate([query, rows.astype(np.int64)])
    node = np.concatenate([node, new_node])
    index = np.concatenate([index, partner_index.astype(np.int64)])
    sims = np.concatenate([sims, similarity.astype(np.float32)])
    order = np.argsort(query, kind="stable")
    return NodeBinding(request, Bindings(query[order], node[order], index[order], sims[order]))


@dataclass
class Joins:
    """What a run keeps for the nodes that join after binding."""

    embeddings: dict[int, NDArray[np.float32]] = field(default_factory=dict)
    """Phase 3's uploads by node id (and each joiner's, once bound)."""
    eval_labels: dict[int, NDArray[np.int64]] = field(default_factory=dict)
    """Labels nodes sent only to score the binding."""
    refused: dict[int, str] = field(default_factory=dict)
    """Late nodes the run did not take, and why (not asked again)."""
    binder: LateBinder | None = None
    """Built when the first late node binds."""
    changed: bool = False
    """A late node changed the bindings since the last checkpoint (save them again)."""
