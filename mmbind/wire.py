"""The Flower message contract between the coordinator's ServerApp and the nodes' ClientApps.

Every message is one dataclass here with a paired ``to_record`` (to Flower's
``RecordDict``) and ``from_record``; the record and entry keys are written once, in
this module. Message types follow Flower's ``<category>.<action>`` form. Arrays
travel in ``ArrayRecord``s, numbers in ``MetricRecord``s, settings in
``ConfigRecord``s (see :mod:`mmbind.records`). Only model weights, metrics,
aggregate statistics and embeddings cross the network: no message carries a raw
sensor window.

Methods run in lockstep: one message per node and round carries every method's
(track's) model, partner features and settings, each under ``<method>.<key>``
(:class:`Models`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from numpy.typing import NDArray

from mmbind.manifest import NodeReport
from mmbind.moments import ChannelMoments
from mmbind.partners import PartnerView
from mmbind.records import (
    STATE_LAYOUT,
    array,
    array_record,
    arrays_to_record,
    config_record,
    get_bool,
    get_float,
    get_int,
    get_str,
    metric_record,
    names,
    record_to_arrays,
    record_to_state,
    state_to_record,
)

__all__ = [
    "ALIGN",
    "EMBED",
    "EVALUATE",
    "FEATURES",
    "FINETUNE",
    "MANIFEST",
    "PRETRAIN",
    "STATE_LAYOUT",
    "AlignReply",
    "AlignRequest",
    "EmbedReply",
    "EmbedRequest",
    "EvaluateReply",
    "EvaluateRequest",
    "FeaturesReply",
    "FeaturesRequest",
    "FinetuneReply",
    "FinetuneRequest",
    "ManifestReply",
    "ManifestRequest",
    "Models",
    "Partners",
    "PretrainReply",
    "PretrainRequest",
    "Track",
    "arrays_to_record",
    "autoencoder_key",
    "get_bool",
    "get_float",
    "get_int",
    "get_str",
    "names",
    "record_to_arrays",
    "record_to_state",
    "state_to_record",
    "track_key",
]

# Message types
MANIFEST = "query.manifest"
PRETRAIN = "train.pretrain"
EMBED = "query.embed"
FEATURES = "query.features"
ALIGN = "train.align"
FINETUNE = "train.finetune"
EVALUATE = "evaluate.test"

# Record keys
CONFIG = "config"
METRICS = "metrics"
MANIFEST_KEY = "manifest"
MOMENTS = "moments"
NORMALIZATION = "normalization"
MODEL = "model"
EMBEDDINGS = "embeddings"
FEATURES_KEY = "features"
PARTNER = "partner"
CONFUSION = "confusion"
PARTNER_GRAD = "partner-grad"
"""A node's reply: gradient of its loss w.r.t. each routed partner feature (``<m>.grad``)."""
ROUTED_GRAD = "routed-grad"
"""To a partner: other nodes' gradients for its own embeddings (``<m>.rows``, ``<m>.grad``)."""
EVAL_LABELS = "evaluation-labels"
LABELS = "labels"
TRACKS = "tracks"
"""Config entry listing the methods (tracks) a message carries, comma-separated."""

# Config and metric entries
_ROLE = "role"
_MODALITIES = "modalities"
_NUM_SAMPLES = "num-samples"
_LABELLED = "labelled"
_TRAINS = "trains"
_PAIRED = "paired-data"
_DATASET = "dataset"
_NUM_CLASSES = "num-classes"
_MODALITY = "modality"
_EPOCHS = "epochs"
_SEED = "seed"
_LABEL_BUDGET = "label-budget"
_ORACLE = "oracle"
_MASK = "mask-vector"
_LOSS = "loss"
_CONFIDENCE = "confidence"
_TRAINED = "trained"
_WEIGHTS = "weights"

# Array name suffixes, after a modality name
_COUNT = ".count"
_TOTAL = ".total"
_TOTAL_SQ = ".total-sq"
_MEAN = ".mean"
_STD = ".std"
_INDEX = ".index"
_FEATURES = ".features"
_ROWS = ".rows"
_GRAD = ".grad"

State = Mapping[str, torch.Tensor]
"""A torch ``state_dict``."""
Normalization = dict[str, tuple[NDArray[np.float32], NDArray[np.float32]]]
"""Per modality, the per-channel mean and std ``(C,)`` the coordinator broadcasts."""


def autoencoder_key(modality: str) -> str:
    """Record key of the autoencoder state of ``modality`` in a pretraining message."""
    return f"ae.{modality}"


def track_key(track: str, key: str) -> str:
    """Key of ``key`` for one method (track) in a message that carries several."""
    return f"{track}.{key}"


def _tracks_with(content: RecordDict, key: str) -> list[str]:
    """The tracks of a reply, in order: those with a ``<track>.<key>`` array record."""
    suffix = f".{key}"
    return [k.removesuffix(suffix) for k in content.array_records if k.endswith(suffix)]


def _split(names_: str) -> tuple[str, ...]:
    return tuple(v for v in names_.split(",") if v)


# ------------------------------------------------------------------ shared parts
def _with_settings(config: Mapping[str, object], normalization: Normalization | None) -> RecordDict:
    """A request's content: its settings, then the run's normalisation (once it has one)."""
    content = RecordDict({CONFIG: ConfigRecord(dict(config))})  # type: ignore[arg-type]
    if normalization is not None:
        arrays: dict[str, NDArray[np.generic]] = {}
        for m, (mean, std) in normalization.items():
            arrays[m + _MEAN] = mean
            arrays[m + _STD] = std
        content[NORMALIZATION] = arrays_to_record(arrays)
    return content


def _settings(content: RecordDict) -> ConfigRecord:
    return content.config_records.get(CONFIG, ConfigRecord())


def _normalization(content: RecordDict) -> Normalization | None:
    record = content.array_records.get(NORMALIZATION)
    if record is None:
        return None
    arrays = record_to_arrays(record)
    return {
        k.removesuffix(_MEAN): (
            np.asarray(arrays[k], np.float32),
            np.asarray(array(arrays, k.removesuffix(_MEAN) + _STD), np.float32),
        )
        for k in arrays
        if k.endswith(_MEAN)
    }


@dataclass(frozen=True)
class Track:
    """One method a lockstep message carries, with what a node needs to build its model."""

    name: str
    oracle: bool = False
    """Train on naturally paired data (the upper bound)."""
    mask_vector: bool = False
    """The fusion model replaces missing views by a learnt mask vector."""


@dataclass
class Models:
    """The models a lockstep message carries: the run's modalities, each track's state."""

    modalities: tuple[str, ...]
    tracks: tuple[Track, ...] = ()
    states: Mapping[str, State] = field(default_factory=dict)
    """Per track name, its model's state."""

    def settings(self) -> dict[str, object]:
        config: dict[str, object] = {_MODALITIES: ",".join(self.modalities)}
        if self.tracks:
            config[TRACKS] = ",".join(t.name for t in self.tracks)
            for t in self.tracks:
                config[track_key(t.name, _ORACLE)] = t.oracle
                config[track_key(t.name, _MASK)] = t.mask_vector
        return config

    def write(self, content: RecordDict) -> None:
        for t in self.tracks:
            content[track_key(t.name, MODEL)] = state_to_record(self.states[t.name])

    @classmethod
    def read(cls, content: RecordDict) -> Models:
        cfg = _settings(content)
        tracks = tuple(
            Track(
                name,
                oracle=get_bool(cfg, track_key(name, _ORACLE)),
                mask_vector=get_bool(cfg, track_key(name, _MASK)),
            )
            for name in names(cfg, TRACKS)
        )
        states = {
            t.name: record_to_state(array_record(content, track_key(t.name, MODEL))) for t in tracks
        }
        return cls(_split(get_str(cfg, _MODALITIES)), tracks, states)


@dataclass
class Partners:
    """One track's partner record for one node: tuple weights and routed partner features."""

    weights: NDArray[np.float32]
    """``(N,)`` the weight of each of the node's samples in the contrastive loss."""
    views: dict[str, PartnerView] = field(default_factory=dict)
    """Per modality the node lacks, the partner features routed to its rows."""

    def to_record(self) -> ArrayRecord:
        arrays: dict[str, NDArray[np.generic]] = {_WEIGHTS: self.weights}
        for m, view in self.views.items():
            arrays[m + _INDEX] = view.index
            arrays[m + _FEATURES] = view.features
        return arrays_to_record(arrays)

    @classmethod
    def from_record(cls, record: ArrayRecord) -> Partners:
        arrays = record_to_arrays(record)
        views = {
            key.removesuffix(_FEATURES): PartnerView(
                index=np.asarray(array(arrays, key.removesuffix(_FEATURES) + _INDEX), np.int64),
                features=np.asarray(arrays[key], np.float32),
            )
            for key in arrays
            if key.endswith(_FEATURES)
        }
        return cls(np.asarray(array(arrays, _WEIGHTS), np.float32), views)


def _grads_to_record(grads: Mapping[str, PartnerView]) -> ArrayRecord:
    arrays: dict[str, NDArray[np.generic]] = {}
    for m, view in grads.items():
        arrays[m + _ROWS] = view.index
        arrays[m + _GRAD] = view.features
    return arrays_to_record(arrays)


def _grads_from_record(record: ArrayRecord) -> dict[str, PartnerView]:
    arrays = record_to_arrays(record)
    return {
        key.removesuffix(_GRAD): PartnerView(
            index=np.asarray(array(arrays, key.removesuffix(_GRAD) + _ROWS), np.int64),
            features=np.asarray(arrays[key], np.float32),
        )
        for key in arrays
        if key.endswith(_GRAD)
    }


# ------------------------------------------------------------------ phase 1
@dataclass(frozen=True)
class ManifestRequest:
    """Phase 1: asks a node for its :class:`~mmbind.manifest.NodeReport` (no content)."""

    normalization: None = None

    def to_record(self) -> RecordDict:
        return RecordDict()

    @classmethod
    def from_record(cls, content: RecordDict) -> ManifestRequest:
        return cls()


@dataclass(frozen=True)
class ManifestReply:
    """Phase 1: a node's report (modalities, counts, labels, channel moments)."""

    report: NodeReport

    def to_record(self) -> RecordDict:
        r = self.report
        info: dict[str, str | int | bool] = {
            _ROLE: r.role,
            _MODALITIES: ",".join(r.modalities),
            _NUM_SAMPLES: r.num_samples,
            _LABELLED: r.labelled,
            _TRAINS: r.trains,
            _PAIRED: r.paired_data,
            _NUM_CLASSES: r.num_classes,
        }
        if r.dataset is not None:
            info[_DATASET] = r.dataset
        arrays: dict[str, NDArray[np.generic]] = {}
        for m, mo in r.moments.items():
            arrays[m + _COUNT] = np.asarray([mo.count], dtype=np.int64)
            arrays[m + _TOTAL] = mo.total
            arrays[m + _TOTAL_SQ] = mo.total_sq
        return RecordDict(
            {
                MANIFEST_KEY: ConfigRecord(info),  # type: ignore[arg-type]
                MOMENTS: arrays_to_record(arrays),
            }
        )

    @classmethod
    def from_record(cls, content: RecordDict) -> ManifestReply:
        info = config_record(content, MANIFEST_KEY)
        modalities = _split(get_str(info, _MODALITIES))
        record = content.array_records.get(MOMENTS)
        arrays = record_to_arrays(record) if record is not None else {}
        moments = {
            m: ChannelMoments(
                count=int(arrays[m + _COUNT][0]),
                total=np.asarray(array(arrays, m + _TOTAL), np.float64),
                total_sq=np.asarray(array(arrays, m + _TOTAL_SQ), np.float64),
            )
            for m in modalities
            if m + _COUNT in arrays
        }
        dataset = info.get(_DATASET)
        return cls(
            NodeReport(
                role=get_str(info, _ROLE),
                modalities=modalities,
                num_samples=get_int(info, _NUM_SAMPLES),
                labelled=get_bool(info, _LABELLED),
                trains=get_bool(info, _TRAINS),
                num_classes=get_int(info, _NUM_CLASSES),
                dataset=None if dataset is None else get_str(info, _DATASET),
                paired_data=get_bool(info, _PAIRED, True),
                moments=moments,
            )
        )


# ------------------------------------------------------------------ phase 2
def _autoencoders(content: RecordDict) -> dict[str, State]:
    prefix = autoencoder_key("")
    return {
        key.removeprefix(prefix): record_to_state(rec)
        for key, rec in content.array_records.items()
        if key.startswith(prefix)
    }


@dataclass
class PretrainRequest:
    """Phase 2: per modality the node holds, the global autoencoder to train further."""

    states: dict[str, State]
    epochs: int
    seed: int
    normalization: Normalization | None = None

    def to_record(self) -> RecordDict:
        content = _with_settings({_EPOCHS: self.epochs, _SEED: self.seed}, self.normalization)
        for m, state in self.states.items():
            content[autoencoder_key(m)] = state_to_record(state)
        return content

    @classmethod
    def from_record(cls, content: RecordDict) -> PretrainRequest:
        cfg = _settings(content)
        return cls(
            _autoencoders(content),
            get_int(cfg, _EPOCHS),
            get_int(cfg, _SEED),
            _normalization(content),
        )


@dataclass
class PretrainReply:
    """Phase 2: the node's autoencoders, each with its loss and sample count."""

    states: dict[str, State]
    losses: dict[str, float]
    num_samples: dict[str, float]

    def to_record(self) -> RecordDict:
        content = RecordDict(
            {autoencoder_key(m): state_to_record(s) for m, s in self.states.items()}
        )
        metrics: dict[str, float] = {}
        for m in self.states:
            metrics[track_key(m, _LOSS)] = self.losses[m]
            metrics[track_key(m, _NUM_SAMPLES)] = self.num_samples[m]
        content[METRICS] = MetricRecord(metrics)  # type: ignore[arg-type]
        return content

    @classmethod
    def from_record(cls, content: RecordDict) -> PretrainReply:
        states = _autoencoders(content)
        metrics = metric_record(content, METRICS)
        return cls(
            states,
            {m: get_float(metrics, track_key(m, _LOSS)) for m in states},
            {m: get_float(metrics, track_key(m, _NUM_SAMPLES)) for m in states},
        )


# ------------------------------------------------------------------ phase 3
@dataclass
class EmbedRequest:
    """Phase 3: embed the node's ``modality`` (the shared one) with ``state``'s encoders."""

    modalities: tuple[str, ...]
    state: State
    modality: str
    labels: bool = False
    """Share label ids too (label binding)."""
    evaluation_labels: bool = False
    """Send labels used only to score the binding."""
    normalization: Normalization | None = None

    def to_record(self) -> RecordDict:
        config = {
            **Models(self.modalities).settings(),
            _MODALITY: self.modality,
            LABELS: self.labels,
            EVAL_LABELS: self.evaluation_labels,
        }
        content = _with_settings(config, self.normalization)
        content[MODEL] = state_to_record(self.state)
        return content

    @classmethod
    def from_record(cls, content: RecordDict) -> EmbedRequest:
        cfg = _settings(content)
        return cls(
            _split(get_str(cfg, _MODALITIES)),
            record_to_state(array_record(content, MODEL)),
            get_str(cfg, _MODALITY),
            labels=get_bool(cfg, LABELS),
            evaluation_labels=get_bool(cfg, EVAL_LABELS),
            normalization=_normalization(content),
        )


@dataclass
class EmbedReply:
    """Phase 3: the node's shared-modality embeddings (and the labels asked for)."""

    embeddings: NDArray[np.float32]
    labels: NDArray[np.int64] | None = None
    evaluation_labels: NDArray[np.int64] | None = None

    def to_record(self) -> RecordDict:
        arrays: dict[str, NDArray[np.generic]] = {EMBEDDINGS: self.embeddings}
        if self.evaluation_labels is not None:
            arrays[EVAL_LABELS] = self.evaluation_labels
        if self.labels is not None:
            # Label binding shares label ids, never the windows.
            arrays[LABELS] = self.labels
        return RecordDict({EMBEDDINGS: arrays_to_record(arrays)})

    @classmethod
    def from_record(cls, content: RecordDict) -> EmbedReply:
        arrays = record_to_arrays(array_record(content, EMBEDDINGS))
        labels = arrays.get(LABELS)
        evaluation = arrays.get(EVAL_LABELS)
        return cls(
            np.asarray(array(arrays, EMBEDDINGS), np.float32),
            None if labels is None else np.asarray(labels, np.int64),
            None if evaluation is None else np.asarray(evaluation, np.int64),
        )


# ------------------------------------------------------------------ phase 4
@dataclass
class FeaturesRequest:
    """Phase 4: per track and modality, the rows whose projected features partners need."""

    models: Models
    rows: dict[str, dict[str, NDArray[np.int64]]]
    """Per track name and (private) modality, the node's own rows, sorted."""
    normalization: Normalization | None = None

    def to_record(self) -> RecordDict:
        content = _with_settings(self.models.settings(), self.normalization)
        self.models.write(content)
        for name, rows in self.rows.items():
            content[track_key(name, PARTNER)] = arrays_to_record(rows)
        return content

    @classmethod
    def from_record(cls, content: RecordDict) -> FeaturesRequest:
        models = Models.read(content)
        rows = {
            t.name: {
                m: np.asarray(index, np.int64)
                for m, index in record_to_arrays(
                    array_record(content, track_key(t.name, PARTNER))
                ).items()
            }
            for t in models.tracks
        }
        return cls(models, rows, _normalization(content))


@dataclass
class FeaturesReply:
    """Phase 4: per track and modality, the projected features ``(P, proj_dim)`` asked for."""

    features: dict[str, dict[str, NDArray[np.float32]]]

    def to_record(self) -> RecordDict:
        return RecordDict(
            {track_key(t, FEATURES_KEY): arrays_to_record(f) for t, f in self.features.items()}
        )

    @classmethod
    def from_record(cls, content: RecordDict) -> FeaturesReply:
        return cls(
            {
                t: {
                    m: np.asarray(f, np.float32)
                    for m, f in record_to_arrays(
                        array_record(content, track_key(t, FEATURES_KEY))
                    ).items()
                }
                for t in _tracks_with(content, FEATURES_KEY)
            }
        )


# ------------------------------------------------------------------ phase 5
@dataclass
class AlignRequest:
    """Phase 5: one round of weighted contrastive training for every aligning track."""

    models: Models
    epochs: int
    seed: int
    partners: dict[str, Partners]
    """Per track name, the node's tuple weights and routed partner features."""
    routed_grads: dict[str, dict[str, PartnerView]] = field(default_factory=dict)
    """Per track and modality, other nodes' gradients for the node's own rows (end to end)."""
    normalization: Normalization | None = None

    def to_record(self) -> RecordDict:
        config = {**self.models.settings(), _EPOCHS: self.epochs, _SEED: self.seed}
        content = _with_settings(config, self.normalization)
        self.models.write(content)
        for name, partners in self.partners.items():
            content[track_key(name, PARTNER)] = partners.to_record()
        for name, grads in self.routed_grads.items():
            content[track_key(name, ROUTED_GRAD)] = _grads_to_record(grads)
        return content

    @classmethod
    def from_record(cls, content: RecordDict) -> AlignRequest:
        cfg = _settings(content)
        models = Models.read(content)
        partners = {
            t.name: Partners.from_record(array_record(content, track_key(t.name, PARTNER)))
            for t in models.tracks
        }
        routed = {
            t.name: _grads_from_record(content.array_records[track_key(t.name, ROUTED_GRAD)])
            for t in models.tracks
            if track_key(t.name, ROUTED_GRAD) in content.array_records
        }
        return cls(
            models,
            get_int(cfg, _EPOCHS),
            get_int(cfg, _SEED),
            partners,
            routed,
            _normalization(content),
        )


@dataclass
class AlignReply:
    """Phase 5: each track's trained model, loss and confidence; the partner gradients."""

    states: dict[str, State]
    num_samples: float
    losses: dict[str, float]
    confidence: dict[str, float]
    """Per track, the mean tuple weight of the node's samples."""
    trained: dict[str, tuple[str, ...]]
    """Per track, the modalities the node trained (its own; all for the upper bound)."""
    partner_grads: dict[str, dict[str, NDArray[np.generic]]] = field(default_factory=dict)
    """Per track and partner modality, the gradient w.r.t. each routed feature (end to end)."""

    def to_record(self) -> RecordDict:
        content = RecordDict()
        metrics: dict[str, float] = {_NUM_SAMPLES: self.num_samples}
        trained: dict[str, str] = {}
        for name, state in self.states.items():
            content[track_key(name, MODEL)] = state_to_record(state)
            grads = self.partner_grads.get(name)
            if grads:
                content[track_key(name, PARTNER_GRAD)] = arrays_to_record(
                    {m + _GRAD: g for m, g in grads.items()}
                )
            metrics[track_key(name, _LOSS)] = self.losses[name]
            metrics[track_key(name, _CONFIDENCE)] = self.confidence[name]
            trained[track_key(name, _TRAINED)] = ",".join(self.trained[name])
        content[METRICS] = MetricRecord(metrics)  # type: ignore[arg-type]
        content[CONFIG] = ConfigRecord(trained)  # type: ignore[arg-type]
        return content

    @classmethod
    def from_record(cls, content: RecordDict) -> AlignReply:
        metrics = metric_record(content, METRICS)
        cfg = config_record(content, CONFIG)
        tracks = _tracks_with(content, MODEL)
        grads = {
            t: {
                name.removesuffix(_GRAD): g  # as the node computed them
                for name, g in record_to_arrays(
                    content.array_records[track_key(t, PARTNER_GRAD)]
                ).items()
            }
            for t in tracks
            if track_key(t, PARTNER_GRAD) in content.array_records
        }
        return cls(
            states={t: record_to_state(array_record(content, track_key(t, MODEL))) for t in tracks},
            num_samples=get_float(metrics, _NUM_SAMPLES),
            losses={t: get_float(metrics, track_key(t, _LOSS)) for t in tracks},
            confidence={t: get_float(metrics, track_key(t, _CONFIDENCE)) for t in tracks},
            trained={t: tuple(names(cfg, track_key(t, _TRAINED))) for t in tracks},
            partner_grads=grads,
        )


# ------------------------------------------------------------------ phase 6
@dataclass
class FinetuneRequest:
    """Phase 6a: supervised rounds on a labelled node, for every track."""

    models: Models
    epochs: int
    seed: int
    label_budget: int | None = None
    """Labelled samples per node (absent: the run config's ``label_budget``)."""
    normalization: Normalization | None = None

    def to_record(self) -> RecordDict:
        config = {**self.models.settings(), _EPOCHS: self.epochs, _SEED: self.seed}
        if self.label_budget is not None:
            config[_LABEL_BUDGET] = self.label_budget
        content = _with_settings(config, self.normalization)
        self.models.write(content)
        return content

    @classmethod
    def from_record(cls, content: RecordDict) -> FinetuneRequest:
        cfg = _settings(content)
        budget = get_int(cfg, _LABEL_BUDGET) if _LABEL_BUDGET in cfg else None
        return cls(
            Models.read(content),
            get_int(cfg, _EPOCHS),
            get_int(cfg, _SEED),
            budget,
            _normalization(content),
        )


@dataclass
class FinetuneReply:
    """Phase 6a: each track's fine-tuned model and loss; the node's labelled sample count."""

    states: dict[str, State]
    num_samples: float
    losses: dict[str, float]

    def to_record(self) -> RecordDict:
        content = RecordDict()
        metrics: dict[str, float] = {_NUM_SAMPLES: self.num_samples}
        for name, state in self.states.items():
            metrics[track_key(name, _LOSS)] = self.losses[name]
            content[track_key(name, MODEL)] = state_to_record(state)
        content[METRICS] = MetricRecord(metrics)  # type: ignore[arg-type]
        return content

    @classmethod
    def from_record(cls, content: RecordDict) -> FinetuneReply:
        metrics = metric_record(content, METRICS)
        tracks = _tracks_with(content, MODEL)
        return cls(
            states={t: record_to_state(array_record(content, track_key(t, MODEL))) for t in tracks},
            num_samples=get_float(metrics, _NUM_SAMPLES),
            losses={t: get_float(metrics, track_key(t, _LOSS)) for t in tracks},
        )


@dataclass
class EvaluateRequest:
    """Phase 6b: score every track's final model on a test node."""

    models: Models
    normalization: Normalization | None = None

    def to_record(self) -> RecordDict:
        content = _with_settings(self.models.settings(), self.normalization)
        self.models.write(content)
        return content

    @classmethod
    def from_record(cls, content: RecordDict) -> EvaluateRequest:
        return cls(Models.read(content), _normalization(content))


@dataclass
class EvaluateReply:
    """Phase 6b: per track, the confusion matrix ``(K, K)`` (rows: true class)."""

    confusion: dict[str, NDArray[np.int64]]

    def to_record(self) -> RecordDict:
        return RecordDict(
            {
                track_key(t, CONFUSION): ArrayRecord(numpy_ndarrays=[cm])
                for t, cm in self.confusion.items()
            }
        )

    @classmethod
    def from_record(cls, content: RecordDict) -> EvaluateReply:
        return cls(
            {
                t: np.asarray(
                    array_record(content, track_key(t, CONFUSION)).to_numpy_ndarrays()[0],
                    np.int64,
                )
                for t in _tracks_with(content, CONFUSION)
            }
        )
