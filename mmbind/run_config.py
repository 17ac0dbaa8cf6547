"""The run configuration of one federated MMBind run.

One validated object, built from Flower's run config (kebab-case keys, as in
``[tool.flwr.app.config]`` of pyproject.toml and ``flwr run -c key=value``) or
from CLI arguments. The ServerApp and every ClientApp build it from the same
``context.run_config``, so both sides agree on the pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mmbind.binding.pairing import ANN_THRESHOLD
from mmbind.binding.weights import WEIGHTINGS, get_weighting
from mmbind.dataset_manifest import activate_dataset
from mmbind.errors import ConfigError, MMBindError
from mmbind.methods import ALL_METHODS, DEFAULT_METHODS, Method
from mmbind.modalities import parse_modalities

if TYPE_CHECKING:
    from mmbind.binding.encoders import EncoderSpec

METHODS = DEFAULT_METHODS

#: ``json_schema_extra`` of the operational fields: where and how a run executes (paths, ids,
#: timeouts, waiting), never what it computes. Every other field is the recipe.
OPERATIONAL: dict[str, Any] = {"operational": True}


class RunConfig(BaseModel):
    """Hyperparameters and data selection of one run (all six phases).

    The fields are the *recipe* (what decides the figures: data, protocol, split, seed,
    methods, every hyperparameter; :meth:`recipe`) and *operational* options (data folder,
    output, run id, resume/attempt, binding-service address, timeouts and waiting; marked with
    :data:`OPERATIONAL`, listed by :meth:`operational_fields`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = Field(
        "synthetic",
        description="'synthetic', 'utd-mhad' or the path of a data set folder "
        "(docs/dataset-format.md); a folder's modalities join the registry",
    )
    data_dir: str = Field("", json_schema_extra=OPERATIONAL)
    seed: int = Field(0, ge=0)
    protocol: Literal["paper", "dev-loso"] = Field(
        "paper",
        description="subject layout: the paper's 2/2/2/2 rotation (split 0..3) or the "
        "leave-one-subject-out development protocol over subjects 1-6 (split = fold 0..5)",
    )
    split: int = Field(0, ge=0)
    nodes_per_role: int = Field(1, ge=1, le=16)
    layout: str = Field(
        "",
        description="node layout file (TOML: nodes, their modalities, subjects, labelled/test; "
        "'paper' = the shipped paper layout); empty = the protocol's roles and split",
    )
    shared_modality: str = "acc"
    binding: Literal["modality", "label"] = "modality"
    label_budget: int = Field(0, ge=0, description="labelled samples used at node C; 0 = all")
    label_budgets: tuple[int, ...] = Field(
        (),
        description="more label budgets, each fine-tuned and evaluated from the same aligned "
        "models (results under label_budgets)",
    )
    encoder: Literal["conv", "tconv", "gru", "paper"] = Field(
        "conv", description="encoder architecture (mmbind.binding.encoders)"
    )
    encoder_dropout: float = Field(0.0, ge=0, lt=1, description="dropout inside the encoders")
    encoder_hidden: int = Field(64, ge=8, le=1024, description="conv channels of the encoders")
    encoder_norm: Literal["default", "group", "batch"] = Field(
        "default", description="encoder normalisation layers (default: the architecture's)"
    )
    embed_dim: int = Field(128, ge=8, le=2048)
    proj_dim: int = Field(128, ge=8, le=2048)
    pretrain_rounds: int = Field(12, ge=0)
    pretrain_epochs: int = Field(5, ge=1)
    align_rounds: int = Field(4, ge=0)
    align_epochs: int = Field(8, ge=1)
    refresh_every: int = Field(1, ge=1, description="refresh partner features every N align rounds")
    finetune_rounds: int = Field(1, ge=1)
    finetune_epochs: int = Field(100, ge=1)
    batch_size: int = Field(32, ge=2, description="batch size of pretraining and alignment")
    learning_rate: float = Field(1e-3, gt=0, lt=1)
    temperature: float = Field(0.07, gt=0)
    pretrain_lr: float = Field(1e-3, gt=0, lt=1, description="autoencoder learning rate")
    align_lr: float = Field(1e-3, gt=0, lt=1, description="contrastive alignment learning rate")
    finetune_lr: float = Field(3e-4, gt=0, lt=1, description="fine-tuning learning rate")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay of the alignment")
    align_init: Literal["autoencoder", "random"] = Field(
        "autoencoder",
        description="encoders the alignment starts from: the pretrained autoencoders' or "
        "fresh ones (binding always uses the autoencoders)",
    )
    partner_grads: bool = Field(
        True,
        description="end-to-end alignment of bound tuples: nodes send back the gradient of "
        "their loss w.r.t. partner embeddings; the coordinator routes it to the partner, "
        "which back-propagates it into its encoder (next round)",
    )
    partner_grad_scale: float = Field(
        1.0, ge=0, description="weight of the routed partner gradients in the partner's steps"
    )
    align_warp: float = Field(0.0, ge=0, description="time-warp strength in alignment")
    align_self_views: bool = Field(
        False, description="alignment adds a second augmented view of every own window"
    )
    finetune_warp: float = Field(0.0, ge=0, description="time-warp strength in fine-tuning")
    finetune_weight_decay: float = Field(0.01, ge=0, description="fine-tuning's weight decay")
    finetune_batch_size: int = Field(32, ge=2, description="fine-tuning's batch size")
    finetune_schedule: Literal["constant", "cosine"] = Field(
        "constant", description="fine-tuning's learning rate: constant or cosine-annealed to 0"
    )
    finetune_average: int = Field(
        0,
        ge=0,
        description="end fine-tuning with the mean weights of its last N epochs (SWA); 0: the last",
    )
    align_augment: float = Field(0.0, ge=0, description="jitter/scaling strength in alignment")
    finetune_augment: float = Field(0.0, ge=0, description="jitter/scaling in fine-tuning")
    encoder_lr_scale: float = Field(
        0.3, ge=0, description="encoders' fine-tuning lr relative to the classifier's; 0 freezes"
    )
    normalization: Literal["channel", "axis", "modality"] = Field(
        "axis",
        description="which channels share one mean/std: each channel, the modality's geometry "
        "(IMU axes together, skeleton per axis over joints, as the paper), or all",
    )
    binding_standardize: bool = Field(
        True, description="standardise shared-modality embeddings per node before binding"
    )
    ann_threshold: int = Field(
        ANN_THRESHOLD,
        ge=0,
        description="query x partner pairs of one node's binding above which it searches an "
        "approximate index (FAISS, the 'ann' extra) instead of exactly; its recall@1 against "
        "exact search on a sample goes into results.json",
    )
    weighting: str = "similarity"
    methods: tuple[Method, ...] = METHODS
    synthetic_classes: int = Field(6, ge=2)
    synthetic_trials: int = Field(6, ge=1)
    output: str = Field("", json_schema_extra=OPERATIONAL)
    run_id: str = Field(
        "",
        description="store namespace of the run; empty = Flower's run id",
        json_schema_extra=OPERATIONAL,
    )
    resume: bool = Field(
        False, description="continue run-id from its last checkpoint", json_schema_extra=OPERATIONAL
    )
    attempt: str = Field(
        "",
        description="id of this submission of run-id (fences stale ones)",
        json_schema_extra=OPERATIONAL,
    )
    binding_service: str = Field(
        "",
        description="HOST:PORT of the BindingService; empty = embedded",
        json_schema_extra=OPERATIONAL,
    )
    reply_timeout: float = Field(
        0.0,
        ge=0,
        description="seconds to wait for a node; 0 = forever",
        json_schema_extra=OPERATIONAL,
    )
    min_nodes: int = Field(
        1, ge=1, description="nodes to wait for before phase 1", json_schema_extra=OPERATIONAL
    )
    wait_seconds: float = Field(
        120.0, gt=0, description="how long to wait for min-nodes", json_schema_extra=OPERATIONAL
    )
    node_grace_seconds: float = Field(
        60.0,
        ge=0,
        description="how long a node the SuperLink reports unavailable (no heartbeat) may take "
        "to come back before it is dropped; its message is sent again when it does; 0 = drop it "
        "at once",
        json_schema_extra=OPERATIONAL,
    )

    @model_validator(mode="before")
    @classmethod
    def _activate_dataset(cls, values: Any) -> Any:
        # A data set folder's modalities must be registered before the fields that name
        # modalities (shared-modality) are checked, in every process that builds the config.
        if isinstance(values, Mapping):
            dataset = values.get("dataset", "synthetic")
            if not isinstance(dataset, str) or not dataset:
                raise ValueError("dataset must be 'synthetic', 'utd-mhad' or a folder path")
            try:
                activate_dataset(dataset)
            except MMBindError as exc:
                raise ValueError(str(exc)) from None
        return values

    @model_validator(mode="after")
    def _layout_places_the_nodes(self) -> RunConfig:
        if self.layout and (self.split or self.nodes_per_role != 1 or self.protocol != "paper"):
            raise ValueError(
                "a layout file places every node and subject: split, nodes-per-role and "
                "protocol do not apply with layout (leave them at 0, 1 and 'paper')"
            )
        return self

    @field_validator("shared_modality")
    @classmethod
    def _known_modality(cls, value: str) -> str:
        return parse_modalities(value)[0]

    @field_validator("weighting")
    @classmethod
    def _known_weighting(cls, value: str) -> str:
        try:
            get_weighting(value)  # what the workflow builds: by name, no parameters
        except ConfigError:
            valid = ", ".join(n for n in sorted(WEIGHTINGS) if _buildable(n))
            raise ValueError(
                f"weighting must be one of {valid} (the weightings without parameters)"
            ) from None
        return value

    @field_validator("methods")
    @classmethod
    def _some_method(cls, value: tuple[Method, ...]) -> tuple[Method, ...]:
        if not value:
            raise ValueError(f"give at least one method of {', '.join(ALL_METHODS)}")
        return value

    @field_validator("methods", "label_budgets", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = tuple(v.strip() for v in value.split(",") if v.strip())
        return value

    @field_validator("label_budgets")
    @classmethod
    def _non_negative(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(b < 0 for b in value):
            raise ValueError("label budgets must be >= 0 (0 = every labelled sample)")
        return tuple(dict.fromkeys(value))

    def encoder_spec(self) -> EncoderSpec:
        """How every node and the coordinator build this run's encoders."""
        from mmbind.binding.encoders import EncoderSpec

        norm = None if self.encoder_norm == "default" else self.encoder_norm
        return EncoderSpec(
            self.encoder, self.embed_dim, self.encoder_dropout, norm, hidden=self.encoder_hidden
        )

    @classmethod
    def from_flower(cls, user_config: Mapping[str, Any]) -> RunConfig:
        """Build from a Flower ``UserConfig`` (kebab-case keys)."""
        return cls.from_mapping({k.replace("-", "_"): v for k, v in user_config.items()})

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RunConfig:
        """Validate ``values``; any invalid entry becomes one :class:`ConfigError` line."""
        dataset = values.get("dataset", "synthetic")
        if isinstance(dataset, str) and dataset:
            activate_dataset(dataset)  # its own error (DataError) rather than a config line
        try:
            return cls.model_validate(dict(values))
        except ValidationError as exc:
            err = exc.errors()[0]
            if not err["loc"]:
                raise ConfigError(
                    f"invalid run config: {str(err['msg']).removeprefix('Value error, ')}"
                ) from None
            where = ".".join(str(p) for p in err["loc"]).replace("_", "-")
            value = err.get("input")
            msg = str(err["msg"]).removeprefix("Value error, ")
            raise ConfigError(f"invalid run config {where}={value!r}: {msg}") from None

    @classmethod
    def operational_fields(cls) -> tuple[str, ...]:
        """The operational fields (marked :data:`OPERATIONAL`), in definition order."""
        return tuple(
            name
            for name, info in cls.model_fields.items()
            if isinstance(info.json_schema_extra, dict)
            and info.json_schema_extra.get("operational")
        )

    def recipe(self) -> dict[str, bool | int | float | str]:
        """What decides the run's figures: :meth:`to_flower` without the operational fields."""
        operational = {name.replace("_", "-") for name in self.operational_fields()}
        return {k: v for k, v in self.to_flower().items() if k not in operational}

    def to_flower(self) -> dict[str, bool | int | float | str]:
        """Flower ``UserConfig`` form: kebab-case keys, scalar values."""
        out: dict[str, bool | int | float | str] = {}
        for key, value in self.model_dump().items():
            if isinstance(value, tuple):
                value = ",".join(str(v) for v in value)
            out[key.replace("_", "-")] = value
        return out


def _buildable(weighting: str) -> bool:
    """Whether the weighting ``weighting`` needs no parameters (a run config names it only)."""
    try:
        get_weighting(weighting)
    except ConfigError:
        return False
    return True
