"""Rows of a node with one vector each: routed partner features, or their gradients."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class PartnerView:
    """Partner features routed to a node for one modality it lacks.

    Attributes
    ----------
    index : ndarray, shape (P,), int64
        Rows of the node's samples that the features belong to.
    features : ndarray, shape (P, proj_dim), float32
        The partner's projected embedding of its private modality (or, routed back to
        the partner in end-to-end alignment, the gradients of other nodes' losses with
        respect to the partner's own rows ``index``).
    """

    index: NDArray[np.int64]
    features: NDArray[np.float32]
