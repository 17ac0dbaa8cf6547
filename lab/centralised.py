"""A centralised MMBind run: every training node's data pooled on one machine.

The MMBind paper trains on one machine with all data at hand (Ouyang et al., "MMBind",
SenSys 2025). :func:`run_centralised` runs the pipeline of
:class:`~mmbind.server.workflow.Workflow` on the same split, seed, label budget and recipe
as the federated run its :class:`~mmbind.run_config.RunConfig` describes, but in one process,
with no Flower and no FedAvg, so that the cost of federation is a measured number.

How each phase is pooled
------------------------
1. Normalisation: per-channel moments merged over every training node and pooled by the run's
   ``normalization`` scheme (:func:`~mmbind.client.data.normalization.merge_normalization`, as
   the federated manifest phase does), installed on every node.
2. Pretraining: one autoencoder per modality trained on the concatenation of every training
   node's windows of that modality; ``pretrain_rounds`` calls of ``pretrain_epochs`` epochs each
   (seed ``seed * 1000 + round``, a fresh Adam per round, as in a federated round).
3. Binding: unchanged, as it must be: each node embeds its shared-modality windows
   (:meth:`LocalNode.embed` standardises over the node's own samples) and the in-process
   :class:`~mmbind.server.binding_service.BindingService` binds across nodes; pairing accuracy
   from evaluation labels.
4. Partner features: the partner node's projected embedding of its private modality for each
   bound row, from (a copy of) the current model; refreshed every ``refresh_every`` rounds.
5. Alignment: every training node's samples pooled into one set of pseudo-complete tuples,
   whatever modality set each node holds (paper layout: A acc+skeleton, B acc+gyro, C
   skeleton+gyro). Per modality of the union: the raw windows, zeros on the rows of nodes
   that lack it, and which rows hold a real one (``own_present`` of
   :func:`mmbind.binding.training.align`, which encodes only those); the partner features of
   the bound rows (``partner_present``); the tuple weights concatenated. One model is trained
   by one ``align`` call of ``align_epochs`` epochs per round (seed ``seed * 1000 + round``,
   a fresh AdamW per round, as a federated node trains in each round), for ``align_rounds``
   rounds; a batch mixes every node's samples, so its negatives come from every node. No
   averaging takes place.
6. Fine-tuning on the pooled labelled rows (each labelled node's seeded label-budget subset)
   for ``finetune_epochs`` epochs; evaluation on every test node (confusion matrices summed).
   Nothing is selected on the test set.

``config.methods`` is not consulted: this is the MMBind method only.
"""

from __future__ import annotations

import copy
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from mmbind.binding.autoencoder import Autoencoder
from mmbind.binding.fusion import FusionModel
from mmbind.binding.training import align, pretrain_autoencoder
from mmbind.binding.weights import get_weighting
from mmbind.client.data.dataset import MultimodalDataset
from mmbind.client.local_data import simulated_nodes
from mmbind.client.node import LocalNode
from mmbind.errors import DataError
from mmbind.modalities import REGISTRY
from mmbind.moments import ChannelMoments, merge_normalization
from mmbind.partners import PartnerView
from mmbind.run_config import RunConfig
from mmbind.server.binding_service import (
    BindingService,
    NodeBinding,
    NodeManifest,
    binding_report,
    check_bindable,
    check_layout,
    model_modalities,
    tuple_weights,
)
from mmbind.server.results import metrics_from_confusion
from mmbind.server.store import InMemoryBindingStore

__all__ = [
    "LABEL",
    "bind_nodes",
    "normalised_nodes",
    "partner_views",
    "pretrain_pooled",
    "run_centralised",
]

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""``progress(label, step, total)``: called as phases and rounds advance."""

Stats = dict[str, tuple[NDArray[np.float32], NDArray[np.float32]]]
"""Per modality, the per-channel mean and std, ``(C,)`` float32 each."""

LABEL = "centralised"
"""Prefix of the history keys and progress labels of a centralised run."""


def _silent(label: str, step: int, total: int) -> None:
    """The default progress callback: does nothing."""


# ------------------------------------------------------------------ nodes and layout
def _manifests(nodes: Sequence[LocalNode]) -> list[NodeManifest]:
    """What each node would report in phase 1; node ids are the partition ids (list index)."""
    return [n.manifest().manifest(i) for i, n in enumerate(nodes)]


def normalised_nodes(config: RunConfig) -> tuple[list[LocalNode], Stats]:
    """The simulated federation's nodes, checked, with the pooled normalisation installed.

    Parameters
    ----------
    config : RunConfig
        The run (dataset, split, ``nodes_per_role``, shared modality, ...).

    Returns
    -------
    nodes : list of LocalNode
        In partition-id order (paper layout: A, B, C, test for ``nodes_per_role = 1``).
    stats : dict
        Per modality, the mean and std ``(C,)`` over every training node's windows.

    Raises
    ------
    ConfigError, DataError
        The data cannot be loaded.
    BindingError
        The layout cannot run MMBind (see :func:`run_centralised`).
    """
    nodes = simulated_nodes(config)
    check_layout(_manifests(nodes), config.shared_modality)
    moments: dict[str, list[ChannelMoments]] = defaultdict(list)
    for n in nodes:
        if n.trains:
            for m, mo in n.manifest().moments.items():
                moments[m].append(mo)
    stats: Stats = merge_normalization(moments, config.normalization)
    for n in nodes:
        n.set_normalization(stats)
    return nodes, stats


def _concat(parts: Sequence[MultimodalDataset]) -> MultimodalDataset:
    """One dataset of the samples of ``parts`` in order; all must hold the same modalities."""
    if not parts:
        raise DataError("nothing to pool: no dataset given")
    first = parts[0]
    for p in parts[1:]:
        if set(p.modalities) != set(first.modalities):
            raise DataError(
                f"cannot pool datasets holding {', '.join(first.modalities)} and "
                f"{', '.join(p.modalities)}"
            )
    return MultimodalDataset(
        windows={m: np.concatenate([p.windows[m] for p in parts]) for m in first.modalities},
        labels=np.concatenate([p.labels for p in parts]),
        subjects=np.concatenate([p.subjects for p in parts]),
        trials=np.concatenate([p.trials for p in parts]),
        num_classes=first.num_classes,
        class_names=first.class_names,
    )


# ------------------------------------------------------------------ phase 2
def pretrain_pooled(
    nodes: Sequence[LocalNode],
    config: RunConfig,
    *,
    history: dict[str, list[float]] | None = None,
    progress: Progress | None = None,
) -> FusionModel:
    """Phase 2, pooled: one autoencoder per modality over every training node's windows.

    Parameters
    ----------
    nodes : sequence of LocalNode
        Normalised nodes (:func:`normalised_nodes`).
    config : RunConfig
        ``seed``, ``embed_dim``, ``proj_dim``, ``pretrain_rounds``, ``pretrain_epochs``,
        ``batch_size`` and ``pretrain_lr`` are used.
    history : dict, optional
        Receives the last-epoch reconstruction loss of each round under
        ``"centralised.pretrain.<m>"``.
    progress : callable, optional
        ``progress(label, step, total)``.

    Returns
    -------
    FusionModel
        Initialised as the federated coordinator does (``torch.manual_seed(seed * 1000)``),
        with every encoder taken from its pretrained autoencoder.
    """
    cfg = config
    report = progress or _silent
    modalities = model_modalities(_manifests(nodes))
    train = [n for n in nodes if n.trains]
    torch.manual_seed(cfg.seed)
    aes = {m: Autoencoder.build(m, cfg.encoder_spec()) for m in modalities}
    pooled = {
        m: torch.cat([n.tensor(m) for n in train if m in n.modalities]) for m in modalities
    }  # (N_m, T, C) per modality, N_m = samples of the training nodes holding m
    for rnd in range(cfg.pretrain_rounds):
        report(f"{LABEL}: pretrain", rnd, cfg.pretrain_rounds)
        for m, ae in aes.items():
            loss = pretrain_autoencoder(
                ae,
                pooled[m],
                epochs=cfg.pretrain_epochs,
                batch_size=cfg.batch_size,
                lr=cfg.pretrain_lr,
                seed=cfg.seed * 1000 + rnd,
            )
            if history is not None:
                history[f"{LABEL}.pretrain.{m}"].append(float(loss))
    report(f"{LABEL}: pretrain", cfg.pretrain_rounds, cfg.pretrain_rounds)
    torch.manual_seed(cfg.seed * 1000)
    model = FusionModel(
        modalities,
        cfg.embed_dim,
        cfg.proj_dim,
        int(nodes[0].data.num_classes),
        encoder=cfg.encoder_spec(),
    )
    for m in modalities:
        model.encoders[m].load_state_dict(aes[m].encoder.state_dict())
    return model


# ------------------------------------------------------------------ phases 3 and 4
def bind_nodes(
    nodes: Sequence[LocalNode], model: FusionModel, config: RunConfig
) -> tuple[list[NodeBinding], dict[str, float | int]]:
    """Phase 3: shared-modality embeddings bound across nodes by the in-process service.

    Parameters
    ----------
    nodes : sequence of LocalNode
        Normalised nodes; node ids of the bindings are their list positions.
    model : FusionModel
        The pretrained model whose shared-modality encoder embeds.
    config : RunConfig
        ``shared_modality``, ``binding`` (``"modality"`` or ``"label"``) and ``seed``.

    Returns
    -------
    bindings : list of NodeBinding
        One per (node, lacking modality) request of the binding plan.
    report : dict
        ``pairs``, ``mean_similarity`` and ``pairing_accuracy`` (from evaluation labels).

    Raises
    ------
    BindingError
        No two training nodes can bind through the shared modality.
    """
    shared = config.shared_modality
    manifests = _manifests(nodes)
    requests = check_bindable(manifests, shared)
    service = BindingService(InMemoryBindingStore(), LABEL, ann_threshold=config.ann_threshold)
    for manifest in manifests:
        service.register(manifest)
    uploaders = sorted({r.node_id for r in requests} | {p for r in requests for p in r.partners})
    eval_labels: dict[int, NDArray[np.int64]] = {}
    for i in uploaders:
        node = nodes[i]
        labels = node.label_ids() if config.binding == "label" else None
        service.upload(i, node.embed(model, shared), labels)
        eval_labels[i] = node.evaluation_labels()
    bindings = service.bind(requests, by=config.binding, seed=config.seed)
    return bindings, binding_report(bindings, eval_labels)


def partner_views(
    nodes: Sequence[LocalNode], model: FusionModel, bindings: Sequence[NodeBinding]
) -> dict[int, dict[str, PartnerView]]:
    """Phase 4: each binding's partner features, per requesting node and lacking modality.

    The partner computes them with a copy of ``model``, as a federated partner does with the
    global model it receives (``model`` itself is left untouched).

    Returns
    -------
    dict
        ``{node_id: {modality: PartnerView}}``; a view's ``index`` ``(P,)`` are the
        requester's rows and its ``features`` ``(P, proj_dim)`` the partner's embeddings.
    """
    snapshot = copy.deepcopy(model)
    out: dict[int, dict[str, PartnerView]] = defaultdict(dict)
    for b in bindings:
        m = b.request.modality
        partner_ids = b.partner_node_ids
        rows: list[NDArray[np.int64]] = []
        feats: list[NDArray[np.float32]] = []
        for p in np.unique(partner_ids):
            sel = partner_ids == p
            rows.append(b.bindings.query_index[sel].astype(np.int64))
            feats.append(nodes[int(p)].features(snapshot, m, b.bindings.partner_index[sel]))
        if rows:
            out[b.request.node_id][m] = PartnerView(np.concatenate(rows), np.concatenate(feats))
    return dict(out)


# ------------------------------------------------------------------ phase 5
class _PooledTuples:
    """Every training node's samples as one set of pseudo-complete tuples.

    Rows are the training nodes' samples in partition-id order (node ``i``'s row ``r`` is
    pooled row ``offsets[i] + r``).

    Attributes
    ----------
    windows : dict of modality to Tensor (N, T, C)
        Normalised windows of every modality some training node holds; zeros on the rows of
        nodes that lack it.
    own_present : dict of modality to BoolTensor (N,)
        True on the rows of the nodes holding the modality.
    weights : Tensor, shape (N,)
        Tuple weights (:func:`~mmbind.server.binding_service.tuple_weights`) concatenated.
    """

    def __init__(
        self, nodes: Sequence[LocalNode], bindings: Sequence[NodeBinding], config: RunConfig
    ) -> None:
        weighting = get_weighting(config.weighting)
        self.ids = [i for i, n in enumerate(nodes) if n.trains]
        sizes = [len(nodes[i].data) for i in self.ids]
        self.offsets = dict(zip(self.ids, np.cumsum([0, *sizes[:-1]]).tolist(), strict=True))
        self.size = int(sum(sizes))
        held = {m for i in self.ids for m in nodes[i].modalities}
        self.windows: dict[str, torch.Tensor] = {}
        self.own_present: dict[str, torch.Tensor] = {}
        for m in (m for m in REGISTRY if m in held):
            shape = next(nodes[i].tensor(m).shape[1:] for i in self.ids if m in nodes[i].modalities)
            parts = [
                nodes[i].tensor(m) if m in nodes[i].modalities else torch.zeros(k, *shape)
                for i, k in zip(self.ids, sizes, strict=True)
            ]
            self.windows[m] = torch.cat(parts)
            self.own_present[m] = torch.cat(
                [
                    torch.full((k,), m in nodes[i].modalities, dtype=torch.bool)
                    for i, k in zip(self.ids, sizes, strict=True)
                ]
            )
        self.weights = torch.from_numpy(
            np.concatenate(
                [
                    np.asarray(tuple_weights(k, i, bindings, weighting), dtype=np.float32)
                    for i, k in zip(self.ids, sizes, strict=True)
                ]
            )
        )

    def bind_windows(self, nodes: Sequence[LocalNode], bindings: Sequence[NodeBinding]) -> None:
        """End-to-end tuples: each bound row gets its partner's *window* of the lacking
        modality (an own view, encoded in the batch with gradient), as the paper's code pairs
        raw samples. Federated nodes get the same gradient through routed partner gradients
        (``partner_grads``); here the data is pooled, so no routing is needed."""
        for b in bindings:
            m, i = b.request.modality, b.request.node_id
            rows = torch.from_numpy(b.bindings.query_index.astype(np.int64) + self.offsets[i])
            for p in np.unique(b.partner_node_ids):
                sel = b.partner_node_ids == p
                source = torch.from_numpy(b.bindings.partner_index[sel].astype(np.int64))
                self.windows[m][rows[torch.from_numpy(sel)]] = nodes[int(p)].tensor(m)[source]
                self.own_present[m][rows[torch.from_numpy(sel)]] = True

    def partners(
        self, per_node: Mapping[int, Mapping[str, PartnerView]]
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Partner features ``(N, proj_dim)`` per modality (zeros on unbound rows), and which
        rows are bound ``(N,)``, from each node's partner views shifted into the pooled rows."""
        feats: dict[str, NDArray[np.float32]] = {}
        bound: dict[str, NDArray[np.bool_]] = {}
        for i in self.ids:
            for m, view in per_node.get(i, {}).items():
                if m not in feats:
                    feats[m] = np.zeros((self.size, view.features.shape[1]), dtype=np.float32)
                    bound[m] = np.zeros(self.size, dtype=bool)
                rows = view.index + self.offsets[i]
                feats[m][rows] = view.features
                bound[m][rows] = True
        return (
            {m: torch.from_numpy(f) for m, f in feats.items()},
            {m: torch.from_numpy(b) for m, b in bound.items()},
        )


def _align_pooled(
    nodes: Sequence[LocalNode],
    model: FusionModel,
    bindings: Sequence[NodeBinding],
    config: RunConfig,
    *,
    history: dict[str, list[float]],
    progress: Progress,
) -> None:
    """Phase 5, pooled: one ``align`` call of ``align_epochs`` epochs per round."""
    cfg = config
    pool = _PooledTuples(nodes, bindings, cfg)
    partner: dict[str, torch.Tensor] = {}
    bound: dict[str, torch.Tensor] = {}
    if cfg.partner_grads:
        pool.bind_windows(nodes, bindings)
    for rnd in range(cfg.align_rounds):
        progress(f"{LABEL}: align", rnd, cfg.align_rounds)
        if bindings and not cfg.partner_grads and (rnd == 0 or rnd % cfg.refresh_every == 0):
            partner, bound = pool.partners(partner_views(nodes, model, bindings))
        loss = align(
            model,
            pool.windows,
            partner,
            pool.weights,
            epochs=cfg.align_epochs,
            batch_size=cfg.batch_size,
            lr=cfg.align_lr,
            temperature=cfg.temperature,
            seed=cfg.seed * 1000 + rnd,
            partner_present=bound,
            own_present=pool.own_present,
            weight_decay=cfg.weight_decay,
            augment=cfg.align_augment,
            warp=cfg.align_warp,
            self_views=cfg.align_self_views,
        )
        history[f"{LABEL}.align.loss"].append(float(loss))
    progress(f"{LABEL}: align", cfg.align_rounds, cfg.align_rounds)


# ------------------------------------------------------------------ phase 6
def _finetune_pooled(
    nodes: Sequence[LocalNode], model: FusionModel, config: RunConfig, stats: Stats
) -> float:
    """Phase 6a: fine-tune on every labelled node's label-budget rows, pooled."""
    labelled = [n for n in nodes if n.trains and n.labelled]
    pooled = _concat([n.data.select(n.labelled_subset()) for n in labelled])
    # The label budget was applied per node above, as each federated node applies it.
    node = LocalNode(
        f"{LABEL}:labelled",
        pooled,
        config.model_copy(update={"label_budget": 0}),
        labelled=True,
    )
    node.set_normalization(stats)
    return node.finetune(model, epochs=config.finetune_epochs, seed=config.seed * 1000)


def _evaluate(nodes: Sequence[LocalNode], model: FusionModel) -> dict[str, float]:
    """Phase 6b: accuracy, macro-F1 and sample count over every test node."""
    tests = [n for n in nodes if not n.trains]
    k = int(tests[0].data.num_classes)
    cm = np.zeros((k, k), dtype=np.int64)
    for n in tests:
        cm += n.confusion(model)
    return metrics_from_confusion(cm)


# ------------------------------------------------------------------ the run
def run_centralised(config: RunConfig, *, progress: Progress | None = None) -> dict[str, Any]:
    """MMBind with every training node's data pooled in one process (no Flower, no FedAvg).

    Same nodes (:func:`~mmbind.client.local_data.simulated_nodes`: dataset, split,
    ``nodes_per_role``), seed, label budget and recipe as the federated run that ``config``
    describes; see the module docstring for how each phase is pooled. The number of torch
    threads is left to the caller.

    Parameters
    ----------
    config : RunConfig
        The federated run to mirror.
    progress : callable, optional
        ``progress(label, step, total)``, labels ``"centralised: <phase>"``.

    Returns
    -------
    dict
        ``accuracy``, ``macro_f1`` (floats in [0, 1]) and ``test_samples`` (float) on the test
        nodes; ``seconds``: wall time of phases 2-6 (data loading excluded, as in a federated
        run's per-method seconds); ``binding``: ``{"pairs": int, "pairing_accuracy": float or
        None, "mean_similarity": float or None}``; ``history``: ``{name: [float]}`` with
        ``"centralised.pretrain.<m>"`` and ``"centralised.align.loss"`` (one entry per round,
        the loss of its last epoch) and ``"centralised.finetune.loss"`` (last epoch).

    Raises
    ------
    ConfigError, DataError
        The data cannot be loaded or pooled.
    BindingError
        No labelled or test node, a test modality no training node holds, or no two training
        nodes can bind through ``config.shared_modality``.
    """
    report = progress or _silent
    get_weighting(config.weighting)  # an unknown weighting fails before any training
    report(f"{LABEL}: load", 0, 1)
    nodes, stats = normalised_nodes(config)
    report(f"{LABEL}: load", 1, 1)
    start = time.perf_counter()
    history: dict[str, list[float]] = defaultdict(list)
    model = pretrain_pooled(nodes, config, history=history, progress=report)
    report(f"{LABEL}: binding", 0, 1)
    bindings, binding = bind_nodes(nodes, model, config)
    report(f"{LABEL}: binding", 1, 1)
    if config.align_init == "random":  # the autoencoders served the binding only
        torch.manual_seed(config.seed * 1000)
        model = FusionModel(
            model.modalities,
            config.embed_dim,
            config.proj_dim,
            model.num_classes,
            encoder=config.encoder_spec(),
        )
    _align_pooled(nodes, model, bindings, config, history=history, progress=report)
    report(f"{LABEL}: fine-tune", 0, 1)
    history[f"{LABEL}.finetune.loss"].append(_finetune_pooled(nodes, model, config, stats))
    report(f"{LABEL}: evaluate", 0, 1)
    metrics = _evaluate(nodes, model)
    report(f"{LABEL}: evaluate", 1, 1)
    seconds = time.perf_counter() - start
    pairing = binding.get("pairing_accuracy")
    similarity = binding.get("mean_similarity")
    log.info(
        "centralised MMBind: accuracy %.4f, macro-F1 %.4f, pairing accuracy %s, %.1f s",
        metrics["accuracy"],
        metrics["macro_f1"],
        "n/a" if pairing is None else f"{pairing:.4f}",
        seconds,
    )
    return {
        "accuracy": float(metrics["accuracy"]),
        "macro_f1": float(metrics["macro_f1"]),
        "test_samples": float(metrics["test_samples"]),
        "seconds": seconds,
        "binding": {
            "pairs": int(binding.get("pairs", 0)),
            "pairing_accuracy": None if pairing is None else float(pairing),
            "mean_similarity": None if similarity is None else float(similarity),
        },
        "history": {k: [float(v) for v in vs] for k, vs in history.items()},
    }
