"""A node's local work: everything a ClientApp does with its private data.

:class:`LocalNode` holds one node's windows and labels and runs each phase's
local step on them. It knows nothing of Flower: the ClientApp decodes a message,
calls one method here, and encodes the answer. Raw windows never leave this
object; only weights, aggregate statistics, embeddings and metrics do.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import torch
from numpy.typing import NDArray

from mmbind.binding.autoencoder import Autoencoder
from mmbind.binding.fusion import FusionModel
from mmbind.binding.search import l2_normalize
from mmbind.binding.training import (
    align,
    embed_all,
    finetune,
    predict,
    pretrain_autoencoder,
)
from mmbind.client.data.dataset import MultimodalDataset
from mmbind.client.data.normalization import normalize
from mmbind.errors import ConfigError, DataError, UnknownModalityError
from mmbind.manifest import NodeReport
from mmbind.moments import ChannelMoments
from mmbind.partners import PartnerView as PartnerView  # re-exported: its old home
from mmbind.run_config import RunConfig

log = logging.getLogger(__name__)


class LocalNode:
    """One node's private data and its local step of each phase.

    Parameters
    ----------
    role : str
        The node's role name (``A``, ``B``, ``C``, ``test`` in the paper's layout).
    data : MultimodalDataset
        The node's own modalities, as it would hold them in a deployment.
    config : RunConfig
        The run's configuration (shared by every node and the coordinator).
    labelled : bool
        Whether the node's labels may be used for training.
    oracle : MultimodalDataset, optional
        The same samples with every modality, used only by the upper-bound
        baseline ("naturally paired data"); absent on real deployments.
    """

    def __init__(
        self,
        role: str,
        data: MultimodalDataset,
        config: RunConfig,
        *,
        labelled: bool,
        trains: bool = True,
        oracle: MultimodalDataset | None = None,
    ) -> None:
        if len(data) == 0:
            raise DataError(f"node role {role!r} has no samples")
        self.role = role
        self.data = data
        self.config = config
        self.labelled = labelled
        self.trains = trains
        self.oracle = oracle
        self._norm: dict[str, tuple[NDArray[np.float32], NDArray[np.float32]]] = {}
        self._cache: dict[tuple[str, bool], torch.Tensor] = {}

    # ---------------------------------------------------------------- data
    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.data.modalities)

    def _source(self, oracle: bool) -> MultimodalDataset:
        if not oracle:
            return self.data
        if self.oracle is None:
            raise ConfigError(
                f"node {self.role!r} holds no naturally paired data; the upper bound runs "
                "only in simulation, where every modality of a sample exists"
            )
        return self.oracle

    def held(self, oracle: bool = False) -> tuple[str, ...]:
        """Modalities this node trains on (all of them for the upper bound)."""
        return tuple(self._source(oracle).modalities)

    def set_normalization(
        self, stats: Mapping[str, tuple[NDArray[np.float32], NDArray[np.float32]]]
    ) -> None:
        """Install the coordinator's per-channel mean and std, ``(C,)`` each per modality."""
        self._norm = {
            m: (np.asarray(a, np.float32), np.asarray(b, np.float32)) for m, (a, b) in stats.items()
        }
        self._cache.clear()

    def tensor(self, modality: str, *, oracle: bool = False) -> torch.Tensor:
        """Normalised windows of ``modality`` as a tensor ``(N, T, C)``."""
        key = (modality, oracle)
        if key not in self._cache:
            source = self._source(oracle)
            if modality not in source.windows:
                raise UnknownModalityError(
                    f"node {self.role!r} holds no {modality!r} data; it holds: "
                    f"{', '.join(source.modalities)}"
                )
            windows = source.windows[modality]
            if modality in self._norm:
                mean, std = self._norm[modality]
                windows = normalize(windows, mean, std)
            self._cache[key] = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32))
        return self._cache[key]

    def inputs(self, *, oracle: bool = False) -> dict[str, torch.Tensor]:
        return {m: self.tensor(m, oracle=oracle) for m in self.held(oracle)}

    # ------------------------------------------------------------ phase 1
    def manifest(self) -> NodeReport:
        """What the node reports: modalities, counts, labels; per-channel moments."""
        return NodeReport(
            role=self.role,
            modalities=self.modalities,
            num_samples=len(self.data),
            labelled=self.labelled,
            trains=self.trains,
            num_classes=int(self.data.num_classes),
            dataset=self.config.dataset,
            paired_data=self.oracle is not None,
            moments={m: ChannelMoments.from_windows(self.data.windows[m]) for m in self.modalities},
        )

    # ------------------------------------------------------------ phase 2
    def pretrain(
        self,
        states: Mapping[str, Mapping[str, torch.Tensor]],
        *,
        epochs: int,
        seed: int,
    ) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, float]]:
        """Train one autoencoder per held modality from the global states given.

        Returns the updated states and metrics ``{"<m>.loss", "<m>.num-samples"}``.
        """
        cfg = self.config
        out: dict[str, dict[str, torch.Tensor]] = {}
        metrics: dict[str, float] = {}
        for m in self.modalities:
            if m not in states:
                continue
            ae = Autoencoder.build(m, cfg.encoder_spec())
            ae.load_state_dict(states[m])
            x = self.tensor(m)
            loss = pretrain_autoencoder(
                ae, x, epochs=epochs, batch_size=cfg.batch_size, lr=cfg.pretrain_lr, seed=seed
            )
            out[m] = ae.state_dict()
            metrics[f"{m}.loss"] = float(loss)
            metrics[f"{m}.num-samples"] = float(len(x))
        return out, metrics

    # ------------------------------------------------------------ phase 3
    def embed(self, model: FusionModel, modality: str) -> NDArray[np.float32]:
        """L2-normalised encoder embeddings ``(N, embed_dim)`` of the node's ``modality``.

        With ``binding_standardize`` (the default) each embedding dimension is first
        standardised over the node's own samples (mean 0, std 1): this removes the offset that
        every window of a node shares (its subjects' style, the sensor placement), so the
        cosine similarity across nodes compares the motion itself. Only the node's own
        statistics are used; nothing else leaves the node.
        """
        x = self.tensor(modality)
        emb = embed_all(model.encoders[modality], x, batch_size=256)
        if self.config.binding_standardize and len(emb) > 1:
            emb = (emb - emb.mean(axis=0)) / (emb.std(axis=0) + 1e-6)
        return l2_normalize(emb.astype(np.float32, copy=False))

    # ------------------------------------------------------------ phase 4
    def features(
        self, model: FusionModel, modality: str, index: NDArray[np.int64]
    ) -> NDArray[np.float32]:
        """Projected embeddings ``(P, proj_dim)`` of ``modality`` for the given rows."""
        x = self.tensor(modality)
        if index.size and (index.min() < 0 or index.max() >= len(x)):
            raise DataError(
                f"partner index out of range for node {self.role!r}: valid rows are 0..{len(x) - 1}"
            )
        sel = x[torch.from_numpy(index.astype(np.int64))]

        def project(batch: torch.Tensor) -> torch.Tensor:
            return model.embed(modality, batch)

        # Eval mode: partner views must not carry dropout noise or batch statistics.
        was_training = model.training
        model.eval()
        try:
            return np.asarray(embed_all(project, sel, batch_size=256), dtype=np.float32)
        finally:
            model.train(was_training)

    # ------------------------------------------------------------ phase 5
    def align(
        self,
        model: FusionModel,
        partners: Mapping[str, PartnerView],
        weights: NDArray[np.float32],
        *,
        epochs: int,
        seed: int,
        oracle: bool = False,
        partner_grads: dict[str, NDArray[np.float32]] | None = None,
        injected: Mapping[str, PartnerView] | None = None,
    ) -> float:
        """Weighted contrastive training on own windows plus routed partner features.

        Samples without a partner for some lacking modality keep that view masked.
        ``weights`` is the per-sample tuple weight ``(N,)``.

        ``partner_grads``, when given, receives per partner modality the gradient of this
        node's loss with respect to each routed partner feature, ``(P, proj_dim)`` in the
        order of that view's ``index`` (averaged over the optimiser steps). ``injected`` are
        such gradients other nodes' losses sent back for this node's own embeddings: a
        ``PartnerView`` whose ``index`` are this node's rows and whose ``features`` are the
        gradients (see :func:`~mmbind.binding.training.align`).
        """
        cfg = self.config
        own = self.inputs(oracle=oracle)
        n = len(self.data)
        partner_tensors: dict[str, torch.Tensor] = {}
        present: dict[str, torch.Tensor] = {}
        for m, view in partners.items():
            if m in own:
                continue
            # Rows a binding left out (label binding) are masked out of the loss.
            feats = np.zeros((n, view.features.shape[1]), dtype=np.float32)
            feats[view.index] = view.features
            has = np.zeros(n, dtype=bool)
            has[view.index] = True
            partner_tensors[m] = torch.from_numpy(feats)
            present[m] = torch.from_numpy(has)
        w = torch.from_numpy(np.asarray(weights, dtype=np.float32))
        grads: dict[str, torch.Tensor] | None = {} if partner_grads is not None else None
        pushed = {
            m: (
                torch.from_numpy(np.asarray(v.index, np.int64)),
                torch.from_numpy(np.asarray(v.features, np.float32)),
            )
            for m, v in (injected or {}).items()
            if m in own
        }
        loss = align(
            model,
            own,
            partner_tensors,
            w,
            epochs=epochs,
            batch_size=cfg.batch_size,
            lr=cfg.align_lr,
            temperature=cfg.temperature,
            seed=seed,
            partner_present=present,
            weight_decay=cfg.weight_decay,
            augment=cfg.align_augment,
            warp=cfg.align_warp,
            self_views=cfg.align_self_views,
            partner_grads=grads,
            injected=pushed,
            injected_scale=cfg.partner_grad_scale,
        )
        if partner_grads is not None and grads is not None:
            for m, view in partners.items():
                if m in grads:
                    partner_grads[m] = grads[m][torch.from_numpy(view.index)].numpy()
        return float(loss)

    # ------------------------------------------------------------ phase 6
    def labelled_subset(self, budget: int | None = None) -> NDArray[np.int64]:
        """Rows whose labels the run may train on (stratified, seeded label budget).

        ``budget`` overrides the run config's ``label_budget`` (0: every row).
        """
        if not self.labelled:
            raise ConfigError(f"node {self.role!r} is not labelled; fine-tuning needs labels")
        n = len(self.data)
        budget = self.config.label_budget if budget is None else budget
        if budget == 0 or budget >= n:
            return np.arange(n, dtype=np.int64)
        rng = np.random.default_rng(self.config.seed)
        labels = self.data.labels
        classes = np.unique(labels)
        chosen: list[int] = []
        per_class = {int(c): rng.permutation(np.flatnonzero(labels == c)).tolist() for c in classes}
        while len(chosen) < budget:
            for c in classes:
                if per_class[int(c)] and len(chosen) < budget:
                    chosen.append(per_class[int(c)].pop())
        return np.sort(np.asarray(chosen, dtype=np.int64))

    def finetune(
        self, model: FusionModel, *, epochs: int, seed: int, budget: int | None = None
    ) -> float:
        """Supervised training of the fusion classifier on the node's labelled rows."""
        rows = torch.from_numpy(self.labelled_subset(budget))
        inputs = {m: t[rows] for m, t in self.inputs().items()}
        labels = torch.from_numpy(self.data.labels.astype(np.int64))[rows]
        cfg = self.config
        return float(
            finetune(
                model,
                inputs,
                labels,
                epochs=epochs,
                batch_size=cfg.finetune_batch_size,
                lr=cfg.finetune_lr,
                seed=seed,
                freeze_encoders=cfg.encoder_lr_scale == 0,
                weight_decay=cfg.finetune_weight_decay,
                augment=cfg.finetune_augment,
                warp=cfg.finetune_warp,
                encoder_lr_scale=cfg.encoder_lr_scale,
                schedule=cfg.finetune_schedule,
                average_last=min(cfg.finetune_average, epochs),
            )
        )

    def confusion(self, model: FusionModel) -> NDArray[np.int64]:
        """Confusion matrix ``(K, K)`` (rows: true class) of ``model`` on this node's data."""
        k = int(self.data.num_classes)
        pred = predict(model, self.inputs()).numpy().astype(np.int64)
        true = self.data.labels.astype(np.int64)
        cm = np.zeros((k, k), dtype=np.int64)
        np.add.at(cm, (true, pred), 1)
        return cm

    def label_ids(self) -> NDArray[np.int64]:
        """Label ids shared for label binding (Ouyang et al. 2025, Sec. 4.2, Table 4)."""
        return self.data.labels.astype(np.int64)

    def evaluation_labels(self) -> NDArray[np.int64]:
        """Labels for coordinator-side evaluation of the binding (never used for training)."""
        return self.data.labels.astype(np.int64)
