"""The coordinator's binding logic: who binds with whom, on what, and how well.

The service keeps nodes' manifests and shared-modality uploads in a
:class:`~mmbind.server.store.BindingStore`, plans which node needs which
complementary modality from which partners, and computes the bindings with
:mod:`mmbind.binding.pairing` (MMBind, Ouyang et al. 2025, Sec. 4.2: each sample
bound to its most similar sample of a node holding the complementary modality,
in both directions, many-to-one). Above ``ann_threshold`` query x partner pairs a
request searches an approximate index instead
(:func:`~mmbind.binding.pairing.bind_by_modality_approx`: FAISS, the optional extra
``ann``), and its binding carries the recall measured against exact search on a sample.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from mmbind.binding.pairing import (
    ANN_THRESHOLD,
    ApproximateSearch,
    Bindings,
    bind_by_label,
    bind_by_modality,
    bind_by_modality_approx,
    pairing_accuracy,
)
from mmbind.binding.weights import Weighting
from mmbind.errors import BindingError, DataError, UnknownNodeError
from mmbind.manifest import NodeManifest as NodeManifest  # re-exported: its old home
from mmbind.modalities import REGISTRY
from mmbind.server.store import BindingStore

log = logging.getLogger(__name__)

EMBEDDINGS = "embeddings"


@dataclass(frozen=True)
class BindRequest:
    """Node ``node_id`` lacks ``modality``; ``partners`` hold it and the shared modality."""

    node_id: int
    modality: str
    partners: tuple[int, ...]


@dataclass(frozen=True)
class NodeBinding:
    """The bindings of one node for one lacking modality, in global node ids."""

    request: BindRequest
    bindings: Bindings
    search: ApproximateSearch | None = None
    """How an approximate binding searched (None: exact search)."""

    @property
    def partner_node_ids(self) -> NDArray[np.uint64]:
        """``(P,)`` node id of each binding's partner."""
        ids = np.asarray(self.request.partners, dtype=np.uint64)  # Flower node ids are u64
        return ids[self.bindings.partner_node]


def plan_requests(nodes: Sequence[NodeManifest], shared: str) -> list[BindRequest]:
    """Every (node, lacking modality) pair that binding through ``shared`` can fill.

    Only training nodes take part. A node holding ``shared`` that lacks modality
    ``m`` binds against all other training nodes holding both ``shared`` and ``m``.
    Requests and partners come in the order of the nodes' roles (names), not of their
    node ids: Flower draws those at random, and the partners' order is the order their
    samples are drawn from in label binding.
    """
    train = sorted((n for n in nodes if n.trains), key=lambda n: (n.role, n.node_id))
    wanted = sorted({m for n in train for m in n.modalities})
    requests: list[BindRequest] = []
    for node in train:
        if shared not in node.modalities:
            continue
        for m in wanted:
            if m in node.modalities:
                continue
            partners = tuple(
                p.node_id
                for p in train
                if p.node_id != node.node_id and shared in p.modalities and m in p.modalities
            )
            if partners:
                requests.append(BindRequest(node.node_id, m, partners))
    return requests


def check_bindable(nodes: Sequence[NodeManifest], shared: str) -> list[BindRequest]:
    """The run's binding plan, or a :class:`BindingError` that says why there is none."""
    requests = plan_requests(nodes, shared)
    if not requests:
        layout = "; ".join(f"node {n.node_id} ({n.role}): {','.join(n.modalities)}" for n in nodes)
        raise BindingError(
            f"no two training nodes can bind through {shared!r}: binding needs nodes that "
            f"share {shared!r} and hold different other modalities; nodes: {layout}"
        )
    return requests


@dataclass(frozen=True)
class Layout:
    """What a run's model looks like, from its nodes' manifests."""

    num_classes: int
    #: Every modality any node holds, in registry order (the fusion model's feature layout).
    modalities: tuple[str, ...]


def model_modalities(nodes: Sequence[NodeManifest]) -> tuple[str, ...]:
    """Every modality any node holds, in registry order (the fusion model's feature layout)."""
    held = {m for n in nodes for m in n.modalities}
    return tuple(m for m in REGISTRY if m in held)


def check_layout(nodes: Sequence[NodeManifest], shared: str | None) -> Layout:
    """Refuse, before any training, a set of nodes MMBind cannot run on.

    Parameters
    ----------
    nodes : sequence of NodeManifest
        Every node of the run, training and test.
    shared : str or None
        The binding modality; ``None`` when no method of the run binds.

    Returns
    -------
    Layout

    Raises
    ------
    DataError
        Nodes disagree on the number of classes.
    BindingError
        No labelled training node, no test node, a test modality no training node holds, or
        (with ``shared``) no two training nodes can bind through it.
    """
    classes = {n.num_classes for n in nodes}
    if len(classes) != 1:
        raise DataError(f"nodes disagree on the number of classes: {sorted(classes)}")
    if not any(n.labelled and n.trains for n in nodes):
        raise BindingError("no labelled node: fine-tuning needs at least one labelled node")
    if not any(not n.trains for n in nodes):
        raise BindingError("no test node: evaluation needs a test node (mmbind-client --test)")
    trained = {m for n in nodes if n.trains for m in n.modalities}
    missing = {m for n in nodes if not n.trains for m in n.modalities} - trained
    if missing:
        raise BindingError(
            f"test nodes hold {sorted(missing)}, which no training node holds: "
            "the model could never learn them"
        )
    if shared is not None:
        check_bindable(nodes, shared)
    return Layout(classes.pop(), model_modalities(nodes))


class BindingService:
    """Binding state of one run, kept in a store.

    Parameters
    ----------
    store : BindingStore
        Where manifests and uploads live (in-process or Redis).
    run_id : str
        Namespace of this run in the store.
    ann_threshold : int
        Query x partner pairs of one request above which modality binding searches an
        approximate index (:data:`ANN_THRESHOLD` by default).
    """

    def __init__(
        self, store: BindingStore, run_id: str, *, ann_threshold: int = ANN_THRESHOLD
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.ann_threshold = ann_threshold

    # ------------------------------------------------------------- manifests
    def register(self, manifest: NodeManifest) -> None:
        """Record a node's phase-1 manifest (the service keeps no state of its own)."""
        self.store.put_manifest(self.run_id, manifest.node_id, manifest.to_dict())

    @property
    def nodes(self) -> list[NodeManifest]:
        """The run's registered nodes, by node id."""
        stored = self.store.manifests(self.run_id)
        return [NodeManifest.from_dict(stored[k]) for k in sorted(stored)]

    def node(self, node_id: int) -> NodeManifest:
        stored = self.store.manifests(self.run_id)
        if node_id not in stored:
            known = ", ".join(str(n) for n in sorted(stored)) or "none"
            raise UnknownNodeError(f"unknown node {node_id}; nodes of this run: {known}")
        return NodeManifest.from_dict(stored[node_id])

    # --------------------------------------------------------------- uploads
    def upload(
        self, node_id: int, embeddings: NDArray[np.float32], labels: NDArray[np.int64] | None = None
    ) -> None:
        """Store a node's shared-modality embeddings ``(N, d)`` (and labels for label binding)."""
        node = self.node(node_id)
        if embeddings.ndim != 2 or embeddings.shape[0] != node.num_samples:
            raise BindingError(
                f"node {node_id} uploaded embeddings of shape {embeddings.shape}; expected "
                f"({node.num_samples}, d) for its {node.num_samples} samples"
            )
        if not np.isfinite(embeddings).all():
            raise BindingError(f"node {node_id} uploaded non-finite embeddings")
        arrays: dict[str, NDArray[np.generic]] = {"embeddings": embeddings.astype(np.float32)}
        if labels is not None:
            arrays["labels"] = labels.astype(np.int64)
        self.store.put_arrays(self.run_id, node_id, EMBEDDINGS, arrays)

    def _uploaded(self, node_id: int) -> dict[str, NDArray[np.generic]]:
        return self.store.arrays(self.run_id, node_id, EMBEDDINGS)

    # --------------------------------------------------------------- binding
    def bind(
        self, requests: Sequence[BindRequest], *, by: str = "modality", seed: int = 0
    ) -> list[NodeBinding]:
        """Compute every request's bindings from the stored uploads.

        ``by="modality"``: top-1 cosine match over the partners' shared-modality
        embeddings, exact up to ``ann_threshold`` pairs, approximate above. ``by="label"``:
        a random partner sample of the same class (the paper's label binding), with the
        embeddings' cosine as similarity.
        """
        out: list[NodeBinding] = []
        for req in requests:
            query = self._uploaded(req.node_id)
            partners = [self._uploaded(p) for p in req.partners]
            q_emb = np.asarray(query["embeddings"], np.float32)
            p_emb = [np.asarray(p["embeddings"], np.float32) for p in partners]
            search: ApproximateSearch | None = None
            if by == "modality" and approximate(q_emb, p_emb, self.ann_threshold):
                bindings, search = bind_by_modality_approx(q_emb, p_emb, seed=seed)
                log.info(
                    "node %d lacks %s: approximate binding (%s, %d pairs), recall@1 %.4f",
                    req.node_id,
                    req.modality,
                    search.method,
                    search.pairs,
                    search.recall,
                )
            elif by == "modality":
                bindings = bind_by_modality(q_emb, p_emb)
            else:
                if "labels" not in query or any("labels" not in p for p in partners):
                    raise BindingError(
                        "label binding needs label ids from every node that binds; "
                        f"node {req.node_id} or one of its partners {req.partners} sent none"
                    )
                bindings = bind_by_label(
                    np.asarray(query["labels"], np.int64),
                    [np.asarray(p["labels"], np.int64) for p in partners],
                    seed=label_binding_seed(seed, self.node(req.node_id).role, req.modality),
                    similarity=(q_emb, p_emb),
                )
            out.append(NodeBinding(req, bindings, search))
            log.debug(
                "node %d lacks %s: %d bindings over partners %s",
                req.node_id,
                req.modality,
                len(bindings),
                req.partners,
            )
        return out


def label_binding_seed(seed: int, role: str, modality: str) -> int:
    """The seed of one request's label binding: the run's, offset by the node's role and the
    modality it lacks (a stable CRC-32; never the node id, which Flower draws at random)."""
    return seed + zlib.crc32(f"{role}/{modality}".encode()) % 10_000


def approximate(
    query: NDArray[np.float32], partners: Sequence[NDArray[np.float32]], threshold: int
) -> bool:
    """Whether binding ``query`` ``(N, d)`` against ``partners`` ``(M_j, d)`` goes approximate."""
    return request_pairs(len(query), [len(p) for p in partners]) > threshold


def request_pairs(num_queries: int, partner_sizes: Sequence[int]) -> int:
    """Pairs an exact binding of one request scores: queries x all partners' samples."""
    return int(num_queries) * int(sum(partner_sizes))


def tuple_weights(
    num_samples: int, node_id: int, bindings: Sequence[NodeBinding], weighting: Weighting
) -> NDArray[np.float32]:
    """Per-sample weight ``(N,)`` of a node's pseudo-complete tuples.

    The mean of the weighted similarity over its bound modalities; samples
    with no binding (or nodes that bind nothing) weigh 1, as natural tuples do.
    """
    mine = [b for b in bindings if b.request.node_id == node_id]
    if not mine:
        return np.ones(num_samples, dtype=np.float32)
    total = np.zeros(num_samples, dtype=np.float64)
    count = np.zeros(num_samples, dtype=np.float64)
    for b in mine:
        w = np.asarray(weighting(b.bindings.similarity), dtype=np.float64)
        np.add.at(total, b.bindings.query_index, w)
        np.add.at(count, b.bindings.query_index, 1.0)
    weights = np.where(count > 0, total / np.maximum(count, 1.0), 1.0)
    return weights.astype(np.float32)


def binding_report(
    bindings: Sequence[NodeBinding], labels: Mapping[int, NDArray[np.int64]]
) -> dict[str, float | int]:
    """Pairs, pairing accuracy (evaluation labels only) and mean similarity of a run's binding."""
    pairs = sum(len(b.bindings) for b in bindings)
    sims = np.concatenate([b.bindings.similarity for b in bindings]) if bindings else np.zeros(0)
    report: dict[str, float | int] = {
        "pairs": int(pairs),
        "mean_similarity": float(sims.mean()) if sims.size else 0.0,
    }
    if labels and all(b.request.node_id in labels for b in bindings):
        correct = 0.0
        for b in bindings:
            acc = pairing_accuracy(
                b.bindings, labels[b.request.node_id], [labels[p] for p in b.request.partners]
            )
            correct += acc * len(b.bindings)
        report["pairing_accuracy"] = correct / pairs if pairs else 0.0
    return report
