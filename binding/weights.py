"""Binding weights: how much a pseudo-complete tuple counts, from its binding similarity.

MMBind weights each bound tuple in the contrastive loss by the quality of its binding; the
paper's code stores the cosine similarity of the best match as the weight (Ouyang et al.,
"MMBind", SenSys 2025, Sec. 4.3). The mapping is pluggable here so that sharper or gated
weightings can be compared. Every weighting maps similarities ``(P,)`` to weights ``(P,)`` in
``[0, 1]``, float32, and is non-decreasing in the similarity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mmbind.errors import ConfigError, DataError, ShapeError

__all__ = [
    "WEIGHTINGS",
    "LogWeighting",
    "PowerWeighting",
    "SimilarityWeighting",
    "SoftmaxWeighting",
    "ThresholdWeighting",
    "UniformWeighting",
    "Weighting",
    "get_weighting",
]


@runtime_checkable
class Weighting(Protocol):
    """Maps binding similarities ``(P,)`` to weights ``(P,)`` in ``[0, 1]``."""

    def __call__(self, similarity: NDArray[np.floating]) -> NDArray[np.float32]: ...


def _check_similarity(similarity: ArrayLike) -> NDArray[np.float32]:
    s = np.asarray(similarity, dtype=np.float32)
    if s.ndim != 1:
        raise ShapeError(f"similarity must have shape (P,); got {s.shape}")
    if not np.isfinite(s).all():
        raise DataError("similarity holds NaN or infinite values")
    return s


def _check_number(name: str, value: object, *, low: float, low_inclusive: bool) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok:
        x = float(value)  # type: ignore[arg-type]
        ok = math.isfinite(x) and (x >= low if low_inclusive else x > low)
    if not ok:
        bound = f">= {low}" if low_inclusive else f"> {low}"
        raise ConfigError(f"{name} must be a finite number {bound}; got {value!r}")
    return float(value)  # type: ignore[arg-type]


@dataclass(frozen=True)
class SimilarityWeighting:
    """The paper's default: the weight is the similarity, clipped to ``[0, 1]``."""

    def __call__(self, similarity: NDArray[np.floating]) -> NDArray[np.float32]:
        """Weights ``clip(s, 0, 1)``, shape ``(P,)``."""
        return np.clip(_check_similarity(similarity), 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class PowerWeighting:
    """``clip(s, 0, 1) ** p``: ``p > 1`` sharpens the contrast between good and poor bindings.

    Parameters
    ----------
    p : float
        Exponent, finite and > 0.
    """

    p: float

    def __post_init__(self) -> None:
        _check_number("p", self.p, low=0.0, low_inclusive=False)

    def __call__(self, similarity: NDArray[np.floating]) -> NDArray[np.float32]:
        """Weights ``clip(s, 0, 1) ** p``, shape ``(P,)``."""
        s = np.clip(_check_similarity(similarity), 0.0, 1.0)
        return np.power(s, np.float32(self.p)).astype(np.float32)


@dataclass(frozen=True)
class ThresholdWeighting:
    """Keep bindings with ``s >= threshold`` at weight 1, drop the others (weight 0).

    Parameters
    ----------
    threshold : float
        Finite, in ``[-1, 1]``.
    """

    threshold: float

    def __post_init__(self) -> None:
        t = _check_number("threshold", self.threshold, low=-1.0, low_inclusive=True)
        if t > 1.0:
            raise ConfigError(f"threshold must be in [-1, 1]; got {self.threshold!r}")

    def __call__(self, similarity: NDArray[np.floating]) -> NDArray[np.float32]:
        """Weights ``1[s >= threshold]``, shape ``(P,)``."""
        return (_check_similarity(similarity) >= self.threshold).astype(np.float32)


@dataclass(frozen=True)
class SoftmaxWeighting:
    """Softmax over the given bindings, rescaled so that the best binding weighs 1.

    ``w = exp((s - max(s)) / temperature)``, i.e. ``softmax(s / T) / max(softmax(s / T))``.
    Weights are relative to the set passed in one call.

    Parameters
    ----------
    temperature : float
        Finite and > 0; small values keep only the bindings near the best one.
    """

    temperature: float

    def __post_init__(self) -> None:
        _check_number("temperature", self.temperature, low=0.0, low_inclusive=False)

    def __call__(self, similarity: NDArray[np.floating]) -> NDArray[np.float32]:
        """Weights in ``(0, 1]`` with maximum 1 (when ``P > 0``), shape ``(P,)``."""
        s = _check_similarity(similarity).astype(np.float64)
        if s.size == 0:
            return np.zeros(0, dtype=np.float32)
        w: NDArray[np.float32] = np.exp((s - s.max()) / self.temperature).astype(np.float32)
        return w


@dataclass(frozen=True)
class LogWeighting:
    """The paper code's mapping: ``clip(log(s) / 2 + 1, 0, 1)``.

    nesl/multimodal-bind (``main_mmbind_3_incomplete_contrastive_weighted.py``) weighs each
    bound tuple by ``log(s) / 2 + 1`` of its similarity ``s``: 1 at ``s = 1``, 0.5 at
    ``s = e^-1``, 0 at ``s = e^-2`` and below (clipped here, so weights stay in ``[0, 1]``).
    """

    def __call__(self, similarity: NDArray[np.floating]) -> NDArray[np.float32]:
        """Weights ``clip(log(s) / 2 + 1, 0, 1)``, 0 where ``s <= e^-2``; shape ``(P,)``."""
        s = _check_similarity(similarity).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            w = np.log(np.clip(s, 1e-12, 1.0)) / 2.0 + 1.0
        return np.clip(w, 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class UniformWeighting:
    """Every binding weighs 1 (no binding-quality weighting; an ablation)."""

    def __call__(self, similarity: NDArray[np.floating]) -> NDArray[np.float32]:
        """Weights ``1``, shape ``(P,)``."""
        return np.ones_like(_check_similarity(similarity), dtype=np.float32)


WEIGHTINGS: dict[str, type[Any]] = {
    "similarity": SimilarityWeighting,
    "log": LogWeighting,
    "power": PowerWeighting,
    "threshold": ThresholdWeighting,
    "softmax": SoftmaxWeighting,
    "uniform": UniformWeighting,
}


def get_weighting(name: str, **params: Any) -> Weighting:
    """Build a weighting by name.

    Parameters
    ----------
    name : str
        One of ``"similarity"``, ``"log"`` (the paper code's), ``"power"`` (``p``),
        ``"threshold"`` (``threshold``), ``"softmax"`` (``temperature``), ``"uniform"``.
    **params
        The weighting's parameters.

    Raises
    ------
    ConfigError
        On an unknown name (the message lists the valid ones), missing or unexpected
        parameters, or invalid parameter values.
    """
    try:
        cls = WEIGHTINGS[name]
    except KeyError:
        valid = ", ".join(sorted(WEIGHTINGS))
        raise ConfigError(f"unknown weighting {name!r}; valid weightings are: {valid}") from None
    try:
        weighting: Weighting = cls(**params)
    except TypeError as exc:
        raise ConfigError(f"bad parameters for weighting {name!r}: {exc}") from None
    return weighting
