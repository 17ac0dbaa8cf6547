"""The multimodal model: one encoder and projection head per modality, and a classifier.

MMBind trains one encoder per modality, aligns them with a contrastive loss through projection
heads, then fine-tunes a classifier on the concatenated encoder features, zero-filling the
features of missing modalities (Ouyang et al., "MMBind", SenSys 2025, Sec. 4.3-4.4). Parameter
names are grouped per modality (``encoders.<m>.*``, ``heads.<m>.*``) so that a coordinator can
aggregate each modality only over the nodes that hold it; the classifier is ``classifier.*``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmbind.binding.encoders import EncoderSpec, build_encoder
from mmbind.errors import ConfigError, ShapeError, UnknownModalityError
from mmbind.modalities import REGISTRY, parse_modalities

__all__ = ["FusionModel"]


def _check_dim(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer; got {value!r}")


class FusionModel(nn.Module):
    """Per-modality encoders and projection heads, plus an optional classifier.

    Parameters
    ----------
    modalities : sequence of str
        Registered modality names; stored in registry order (``self.modalities``) so that
        every node builds the same feature layout whatever order it lists them in.
    embed_dim : int
        Encoder output size; features are ``len(modalities) * embed_dim`` wide.
    proj_dim : int
        Size of the contrastive projection (``embed``).
    num_classes : int, optional
        Builds ``classifier`` (``Linear - ReLU - Linear``) when given.
    mask_vector : bool
        Append the missing-modality mask (1 where a modality is present) to the features,
        so the classifier knows which blocks are zero-filled (the MPM baseline of the
        MMBind paper's Table 3).
    encoder : EncoderSpec, optional
        How the encoders are built (:func:`~mmbind.binding.encoders.build_encoder`); its
        ``embed_dim`` is replaced by ``embed_dim``. Default: ``EncoderSpec()``.

    Raises
    ------
    UnknownModalityError
        On an unknown or empty modality list.
    ConfigError
        On non-positive sizes.
    """

    def __init__(
        self,
        modalities: Sequence[str],
        embed_dim: int = 128,
        proj_dim: int = 128,
        num_classes: int | None = None,
        *,
        mask_vector: bool = False,
        encoder: EncoderSpec | None = None,
    ) -> None:
        super().__init__()
        if isinstance(modalities, str):
            raise ConfigError("modalities must be a sequence of names, e.g. ['acc', 'gyro']")
        names = set(parse_modalities(modalities))
        self.modalities: tuple[str, ...] = tuple(m for m in REGISTRY if m in names)
        _check_dim("embed_dim", embed_dim)
        _check_dim("proj_dim", proj_dim)
        if num_classes is not None:
            _check_dim("num_classes", num_classes)
        self.embed_dim: int = embed_dim
        self.proj_dim: int = proj_dim
        self.num_classes: int | None = num_classes
        self.mask_vector: bool = bool(mask_vector)
        base = encoder or EncoderSpec()
        self.encoder_spec: EncoderSpec = EncoderSpec(
            base.arch, embed_dim, dropout=base.dropout, norm=base.norm, hidden=base.hidden
        )
        self.encoders = nn.ModuleDict(
            {m: build_encoder(m, self.encoder_spec) for m in self.modalities}
        )
        self.heads = nn.ModuleDict(
            {
                m: nn.Sequential(
                    nn.Linear(embed_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, proj_dim)
                )
                for m in self.modalities
            }
        )
        self.classifier: nn.Module | None = None
        if num_classes is not None:
            width = self.feature_dim
            self.classifier = nn.Sequential(
                nn.Linear(width, embed_dim), nn.ReLU(), nn.Linear(embed_dim, num_classes)
            )

    @property
    def feature_dim(self) -> int:
        """Width of :meth:`features`: one block per modality, plus the mask if any."""
        blocks = len(self.modalities) * self.embed_dim
        return blocks + (len(self.modalities) if self.mask_vector else 0)

    def check_modality(self, modality: str) -> None:
        """Raise :class:`UnknownModalityError` unless ``modality`` is one of the model's."""
        if modality not in self.encoders:
            raise UnknownModalityError(
                f"modality {modality!r} is not part of this model; "
                f"its modalities are: {', '.join(self.modalities)}"
            )

    def embed(self, modality: str, x: Tensor) -> Tensor:
        """L2-normalised projection of one modality, used by the contrastive loss.

        Parameters
        ----------
        modality : str
        x : Tensor, shape (B, T, C)

        Returns
        -------
        Tensor, shape (B, proj_dim), unit rows
        """
        self.check_modality(modality)
        z = self.heads[modality](self.encoders[modality](x))
        return F.normalize(z, dim=-1)

    def features(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """Concatenated encoder outputs, zeros for the modalities absent from ``inputs``.

        Parameters
        ----------
        inputs : mapping of modality name to Tensor (B, T, C)
            Any non-empty subset of ``self.modalities``, all with the same ``B``.

        Returns
        -------
        Tensor, shape (B, feature_dim)
            Blocks in the order of ``self.modalities``; with ``mask_vector``, then one
            column per modality holding 1.0 where it was given.

        Raises
        ------
        ShapeError
            On no input, or inputs with different batch sizes or bad window shapes.
        UnknownModalityError
            On a modality the model does not have.
        """
        if not inputs:
            raise ShapeError(f"no input given; give at least one of {', '.join(self.modalities)}")
        for m in inputs:
            self.check_modality(m)
        sizes = {m: int(x.shape[0]) if x.ndim else -1 for m, x in inputs.items()}
        if len(set(sizes.values())) != 1:
            raise ShapeError(f"inputs must share the batch size; got {sizes}")
        ref = next(iter(inputs.values()))
        blocks = []
        for m in self.modalities:
            if m in inputs:
                blocks.append(self.encoders[m](inputs[m]))
            else:
                blocks.append(ref.new_zeros(ref.shape[0], self.embed_dim))
        if self.mask_vector:
            present = [1.0 if m in inputs else 0.0 for m in self.modalities]
            blocks.append(ref.new_tensor(present).expand(ref.shape[0], len(present)))
        return torch.cat(blocks, dim=1)

    def classify(self, features: Tensor) -> Tensor:
        """Logits ``(B, num_classes)`` from features ``(B, feature_dim)``."""
        if self.classifier is None:
            raise ConfigError("this model has no classifier: build it with num_classes")
        logits: Tensor = self.classifier(features)
        return logits

    def forward(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """Class logits ``(B, num_classes)`` from any non-empty subset of the modalities.

        Raises
        ------
        ConfigError
            If the model was built without ``num_classes``.
        ShapeError, UnknownModalityError
            As :meth:`features`.
        """
        if self.classifier is None:
            raise ConfigError("this model has no classifier: build it with num_classes")
        return self.classify(self.features(inputs))

    def _modality_prefixes(self, modality: str) -> tuple[str, str]:
        self.check_modality(modality)
        return (f"encoders.{modality}.", f"heads.{modality}.")

    def modality_state(self, modality: str) -> dict[str, Tensor]:
        """Detached copies of the parameters of one modality's encoder and head.

        Returns
        -------
        dict
            Full state_dict keys (``encoders.<m>.*``, ``heads.<m>.*``) to tensors.
        """
        prefixes = self._modality_prefixes(modality)
        return {
            k: v.detach().clone() for k, v in self.state_dict().items() if k.startswith(prefixes)
        }

    def load_modality_state(self, modality: str, state: Mapping[str, Tensor]) -> None:
        """Load one modality's encoder and head from :meth:`modality_state`'s format.

        Raises
        ------
        ShapeError
            If the keys differ from those of :meth:`modality_state` or a tensor has the
            wrong shape.
        """
        prefixes = self._modality_prefixes(modality)
        own = {k: v for k, v in self.state_dict().items() if k.startswith(prefixes)}
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise ShapeError(
                f"state for modality {modality!r} does not fit: "
                f"missing keys {missing[:5]}, unexpected keys {unexpected[:5]}"
            )
        for k, v in state.items():
            if tuple(v.shape) != tuple(own[k].shape):
                raise ShapeError(
                    f"state for {k!r} has shape {tuple(v.shape)}; expected {tuple(own[k].shape)}"
                )
        with torch.no_grad():
            for k, v in state.items():
                own[k].copy_(v)
