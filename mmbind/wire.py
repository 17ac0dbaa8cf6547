"""The Flower message contract between the coordinator's ServerApp and the nodes' ClientApps.

Message types follow Flower's ``<category>.<action>`` form. Arrays travel in
``ArrayRecord``s, numbers in ``MetricRecord``s, settings in ``ConfigRecord``s.
Only model weights, metrics, aggregate statistics and embeddings cross the
network: no message carries a raw sensor window.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord
from numpy.typing import NDArray

from mmbind.errors import FederationError

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
EVAL_LABELS = "evaluation-labels"


TRACKS = "tracks"
"""Config entry listing the methods (tracks) a message carries, comma-separated."""


def autoencoder_key(modality: str) -> str:
    """Record key of the autoencoder state of ``modality`` in a pretraining message."""
    return f"ae.{modality}"


def track_key(track: str, key: str) -> str:
    """Key of ``key`` for one method (track) in a message that carries several.

    Methods run in lockstep: one message per node and round carries every method's
    model, partner features and settings, each under ``<method>.<key>``.
    """
    return f"{track}.{key}"


def names(record: ConfigRecord, key: str) -> list[str]:
    """A comma-separated list entry of a config record (empty when absent)."""
    value = record.get(key, "")
    if not isinstance(value, str):
        raise FederationError(f"message entry {key!r} must be a string; got {value!r}")
    return [v for v in value.split(",") if v]


def arrays_to_record(arrays: Mapping[str, NDArray[np.generic]]) -> ArrayRecord:
    """Pack named numpy arrays into an ``ArrayRecord``."""
    return ArrayRecord(array_dict={k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()})


def record_to_arrays(record: ArrayRecord) -> dict[str, NDArray[np.generic]]:
    """Unpack an ``ArrayRecord`` made by :func:`arrays_to_record`."""
    return {k: v.numpy() for k, v in record.items()}


def state_to_record(state: Mapping[str, torch.Tensor]) -> ArrayRecord:
    """Pack a torch ``state_dict`` (detached, on CPU)."""
    return ArrayRecord(torch_state_dict={k: v.detach().cpu() for k, v in state.items()})


def record_to_state(record: ArrayRecord) -> dict[str, torch.Tensor]:
    """Unpack a torch ``state_dict`` packed by :func:`state_to_record`."""
    return dict(record.to_torch_state_dict())


def get_int(record: ConfigRecord | MetricRecord, key: str, default: int | None = None) -> int:
    """An integer entry of a record; a missing or mistyped entry is a FederationError."""
    value = record.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FederationError(f"message entry {key!r} must be a number; got {value!r}")
    return int(value)


def get_float(record: ConfigRecord | MetricRecord, key: str, default: float | None = None) -> float:
    """A float entry of a record; a missing or mistyped entry is a FederationError."""
    value = record.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FederationError(f"message entry {key!r} must be a number; got {value!r}")
    return float(value)


def get_str(record: ConfigRecord, key: str, default: str | None = None) -> str:
    """A string entry of a record; a missing or mistyped entry is a FederationError."""
    value = record.get(key, default)
    if not isinstance(value, str):
        raise FederationError(f"message entry {key!r} must be a string; got {value!r}")
    return value


def get_bool(record: ConfigRecord, key: str, default: bool = False) -> bool:
    """A boolean entry of a record (absent: ``default``)."""
    value = record.get(key, default)
    if not isinstance(value, bool):
        raise FederationError(f"message entry {key!r} must be a boolean; got {value!r}")
    return value
