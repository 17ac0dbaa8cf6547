"""The methods a run can compare, and which phases each of them takes part in.

Every method of the MMBind paper's Table 3 (and Table 4's label binding) is a
recipe over the same federated phases (DESIGN.md):

================  ===========  ===========  =====  ==========================================
method            pretrain     binding      align  what it is
================  ===========  ===========  =====  ==========================================
lower_bound       --           --           no     supervised on the labelled node only
unimodal          own          --           no     federated unimodal encoders, concatenated
mim               own          --           yes    incomplete multimodal contrastive, no binding
mpm               own          --           yes    MIM plus a missing-modality mask vector
mmbind            own          run config   yes    shared-modality binding, weighted contrastive
mmbind_label      own          label        yes    MMBind with label binding (Table 4)
upper_bound       oracle       --           yes    naturally paired data (every modality)
================  ===========  ===========  =====  ==========================================

``own`` pretraining trains each node's autoencoders on the modalities it holds;
``oracle`` on every modality of its samples (the upper bound's paired data).
Methods that share a pretraining stream share its result: a run pretrains each
stream once, whatever the number of methods (Ouyang et al., "MMBind", SenSys 2025,
Sec. 5.1 for the baselines).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Method = Literal["lower_bound", "unimodal", "mim", "mpm", "mmbind", "mmbind_label", "upper_bound"]
ALL_METHODS: tuple[Method, ...] = (
    "lower_bound",
    "unimodal",
    "mim",
    "mpm",
    "mmbind",
    "mmbind_label",
    "upper_bound",
)
DEFAULT_METHODS: tuple[Method, ...] = ("mmbind", "lower_bound", "upper_bound")

Stream = Literal["own", "oracle"]


@dataclass(frozen=True)
class MethodSpec:
    """The phases one method takes part in.

    Attributes
    ----------
    name : str
        The method's name in run configs and results.
    pretrain : {"own", "oracle"} or None
        Which autoencoder pretraining stream initialises its encoders (None: random).
    binding : {"config", "label"} or None
        ``"config"`` binds as the run config's ``binding`` says; ``"label"`` always
        by label; None: no binding, no partner features.
    align : bool
        Whether it runs the contrastive alignment rounds.
    oracle : bool
        Trains on every modality of a node's samples (naturally paired data).
    mask_vector : bool
        The classifier also sees which modalities are present (MPM).
    """

    name: str
    pretrain: Stream | None
    binding: Literal["config", "label"] | None
    align: bool
    oracle: bool = False
    mask_vector: bool = False

    def binding_kind(self, configured: str) -> str | None:
        """``"modality"`` or ``"label"``: how this method binds under a run's ``binding``."""
        if self.binding is None:
            return None
        return configured if self.binding == "config" else "label"


SPECS: dict[str, MethodSpec] = {
    "lower_bound": MethodSpec("lower_bound", None, None, align=False),
    "unimodal": MethodSpec("unimodal", "own", None, align=False),
    "mim": MethodSpec("mim", "own", None, align=True),
    "mpm": MethodSpec("mpm", "own", None, align=True, mask_vector=True),
    "mmbind": MethodSpec("mmbind", "own", "config", align=True),
    "mmbind_label": MethodSpec("mmbind_label", "own", "label", align=True),
    "upper_bound": MethodSpec("upper_bound", "oracle", None, align=True, oracle=True),
}

TITLES: dict[str, str] = {
    "lower_bound": "Lower bound (labelled node only)",
    "unimodal": "Unimodal (federated encoders, concatenated)",
    "mim": "MIM (incomplete contrastive, no binding)",
    "mpm": "MPM (MIM + missing-modality mask)",
    "mmbind": "MMBind (federated)",
    "mmbind_label": "MMBind, label binding",
    "upper_bound": "Upper bound (naturally paired)",
    "mmbind_centralised": "MMBind (centralised)",
}
