"""The methods a run can compare, and which phases each of them takes part in.

Every method of the MMBind paper's Table 3 (and Table 4's label binding) is a
recipe over the same federated phases (docs/design.md):

================  ========  ===========  =====  =============================================
method            pretrain  binding      align  what it is
================  ========  ===========  =====  =============================================
lower_bound       no        --           no     supervised on the labelled node only
unimodal          yes       --           no     federated unimodal encoders, concatenated
mim               yes       --           yes    incomplete multimodal contrastive, no binding
mpm               yes       --           yes    MIM plus a missing-modality mask vector
mmbind            yes       run config   yes    shared-modality binding, weighted contrastive
mmbind_label      yes       label        yes    MMBind with label binding (Table 4)
upper_bound       yes       --           yes    alignment on naturally paired data
================  ========  ===========  =====  =============================================

Pretraining is the same for every method that has it (federated unimodal
autoencoders on the modalities each node holds), so a run pretrains once and every
method starts from the result. The upper bound then differs from MMBind in one thing
only: its alignment sees each training sample's *real* other modalities (naturally
paired data, simulation or ``--paired-data`` nodes) instead of bound partners', so the
gap between the two is the cost of binding (Ouyang et al., "MMBind", SenSys 2025,
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

CENTRALISED = "mmbind_centralised"
"""MMBind with every node's data pooled on one machine (``mmbind.lab.centralised``)."""
REPORT_ORDER: tuple[str, ...] = (
    *(m for m in ALL_METHODS if m != "upper_bound"),
    CENTRALISED,
    "upper_bound",
)
"""Every method name, federated or not, in the order of the paper's tables."""


@dataclass(frozen=True)
class MethodSpec:
    """The phases one method takes part in.

    Attributes
    ----------
    name : str
        The method's name in run configs and results.
    pretrain : bool
        Whether the federated autoencoders initialise its encoders (else: random).
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
    pretrain: bool
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
    "lower_bound": MethodSpec("lower_bound", False, None, align=False),
    "unimodal": MethodSpec("unimodal", True, None, align=False),
    "mim": MethodSpec("mim", True, None, align=True),
    "mpm": MethodSpec("mpm", True, None, align=True, mask_vector=True),
    "mmbind": MethodSpec("mmbind", True, "config", align=True),
    "mmbind_label": MethodSpec("mmbind_label", True, "label", align=True),
    "upper_bound": MethodSpec("upper_bound", True, None, align=True, oracle=True),
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
