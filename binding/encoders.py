"""Per-modality sensor encoders: from a window ``(T, C)`` to an embedding, chosen by name.

Every encoder maps windows of one registered modality, shape ``(B, T, C)``, to ``(B, embed_dim)``
and carries ``modality``, ``window``, ``channels`` and ``embed_dim`` attributes, so models,
autoencoders and federated averaging treat them alike. :func:`build_encoder` builds one by its
architecture name (:data:`ARCHITECTURES`):

* ``"conv"``: four temporal convolutions, mean + max pooling over time (the order of events
  within a window is kept only within the receptive field);
* ``"tconv"``: the same convolutions with two more temporal downsamplings, then the whole
  downsampled time axis flattened into a linear map, so the order of events is kept;
* ``"gru"``: three strided convolutions, then a one-layer GRU over time;
* ``"paper"``: the MMBind paper's conv + GRU encoders (:mod:`mmbind.binding.paper_encoders`),
  2-D convolutions over (time, axes) for one-point sensors and 3-D convolutions over (time,
  points, axes) for the skeleton, a 2-layer GRU over the 16 feature maps, BatchNorm and dropout
  (Ouyang et al., "MMBind", SenSys 2025; nesl/multimodal-bind ``single_modality.py``).

Normalisation is GroupNorm by default (no running statistics, so averaging a state_dict never
mixes batch statistics of different nodes) or BatchNorm.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mmbind.errors import ConfigError, DataError, ShapeError
from mmbind.modalities import get_modality

__all__ = [
    "ARCHITECTURES",
    "EncoderSpec",
    "SensorEncoder",
    "build_encoder",
    "check_window_batch",
    "count_parameters",
]

_GROUPS = 8
_LONG_WINDOW = 80  # windows at least this long get a strided first convolution

#: Defaults of a ``SensorEncoder`` built without explicit ``arch``/``norm``/``hidden``.
DEFAULT_ARCH = "conv"
DEFAULT_NORM = "group"
DEFAULT_HIDDEN = 64


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer; got {value!r}")


def check_window_batch(x: Tensor, modality: str, window: int, channels: int) -> None:
    """Check that ``x`` is a finite batch of windows of shape ``(B, window, channels)``.

    Raises
    ------
    ShapeError
        If ``x`` is not a 3-D floating tensor of the expected window shape.
    DataError
        If ``x`` holds NaN or infinite values.
    """
    if not isinstance(x, Tensor):
        raise ShapeError(f"{modality} windows must be a torch.Tensor; got {type(x).__name__}")
    if x.ndim != 3 or tuple(x.shape[1:]) != (window, channels):
        raise ShapeError(
            f"{modality} windows must have shape (B, {window}, {channels}); got {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise ShapeError(f"{modality} windows must be floating point; got {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise DataError(f"{modality} windows hold NaN or infinite values")


class SensorEncoder(nn.Module):
    """Encode windows of one registered modality into ``embed_dim``-dimensional vectors.

    ``arch="conv"``: ``Conv1d(C, h, 5) - Conv1d(h, h, 5, stride s) - Conv1d(h, h, 5, stride 2)
    - Conv1d(h, h, 3)``, each followed by a norm layer and ReLU, then the concatenated mean and
    max over time and a linear map to the embedding. ``arch="gru"``: ``Conv1d(C, h, 5, stride
    s) - Conv1d(h, h, 5, stride 2) - Conv1d(h, h, 3, stride 2)`` with norm and ReLU, a GRU with
    ``h`` hidden units over the 15 or 10 remaining steps and a linear map of its last hidden
    state. ``arch="tconv"``: the convolutions of ``"conv"`` with the last one strided by 2,
    then the ``h x T'`` feature map flattened (time order kept) and mapped linearly.
    ``s = 2`` for long windows (``T >= 80``: the 120-sample IMU windows) and ``s = 1``
    otherwise (the 40-frame skeleton); for the skeleton the first convolution mixes all 60
    joint channels. With the defaults (``h = 64``): about 71k parameters for the IMU
    modalities and 90k for the skeleton (conv), 68k and 86k (gru). Dropout, if any, acts on
    the features before the last linear map.

    Inputs are expected in the units of the registry, standardised per channel by the caller.

    Parameters
    ----------
    modality : str
        A registered modality name (``mmbind.modalities``); it fixes ``(T, C)``.
    embed_dim : int
        Size of the embedding.
    hidden : int, optional
        Channels of the convolutions (and GRU units); a multiple of 8. Default
        :data:`DEFAULT_HIDDEN`.
    arch : {"conv", "tconv", "gru"}, optional
        Default :data:`DEFAULT_ARCH`.
    norm : {"group", "batch"}, optional
        GroupNorm (8 groups) or BatchNorm; default :data:`DEFAULT_NORM`.
    dropout : float
        Dropout probability on the pooled / flattened features, in ``[0, 1)``.

    Raises
    ------
    UnknownModalityError
        If ``modality`` is not registered.
    ConfigError
        If ``embed_dim`` or ``hidden`` is not a positive integer, ``hidden`` is not a
        multiple of 8, or ``arch``/``norm`` is unknown.
    """

    def __init__(
        self,
        modality: str,
        embed_dim: int = 128,
        hidden: int | None = None,
        *,
        arch: str | None = None,
        norm: str | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        spec = get_modality(modality)
        hidden = DEFAULT_HIDDEN if hidden is None else hidden
        arch = DEFAULT_ARCH if arch is None else arch
        norm = DEFAULT_NORM if norm is None else norm
        _check_positive_int("embed_dim", embed_dim)
        _check_positive_int("hidden", hidden)
        if hidden % _GROUPS:
            raise ConfigError(f"hidden must be a multiple of {_GROUPS}; got {hidden}")
        if arch not in ("gru", "conv", "tconv"):
            raise ConfigError(f"arch must be 'gru', 'conv' or 'tconv'; got {arch!r}")
        _check_dropout(dropout)
        if norm not in ("group", "batch"):
            raise ConfigError(f"norm must be 'group' or 'batch'; got {norm!r}")
        self.modality: str = spec.name
        self.window: int = spec.window
        self.channels: int = spec.channels
        self.embed_dim: int = embed_dim
        self.hidden: int = hidden
        self.arch: str = arch
        self.norm: str = norm
        self.drop = nn.Dropout(dropout)

        def block(c_in: int, c_out: int, k: int, stride: int) -> list[nn.Module]:
            layer = nn.GroupNorm(_GROUPS, c_out) if norm == "group" else nn.BatchNorm1d(c_out)
            return [nn.Conv1d(c_in, c_out, k, stride=stride, padding=k // 2), layer, nn.ReLU()]

        first_stride = 2 if spec.window >= _LONG_WINDOW else 1
        if arch == "gru":
            self.conv = nn.Sequential(
                *block(spec.channels, hidden, 5, first_stride),
                *block(hidden, hidden, 5, 2),
                *block(hidden, hidden, 3, 2),
            )
            self.gru: nn.GRU | None = nn.GRU(hidden, hidden, batch_first=True)
            self.out = nn.Linear(hidden, embed_dim)
        elif arch == "tconv":
            self.conv = nn.Sequential(
                *block(spec.channels, hidden, 5, 1),
                *block(hidden, hidden, 5, first_stride),
                *block(hidden, hidden, 5, 2),
                *block(hidden, hidden, 3, 2),
            )
            self.gru = None
            steps = spec.window
            for stride in (1, first_stride, 2, 2):
                steps = (steps - 1) // stride + 1
            self.out = nn.Linear(hidden * steps, embed_dim)
        else:
            self.conv = nn.Sequential(
                *block(spec.channels, hidden, 5, 1),
                *block(hidden, hidden, 5, first_stride),
                *block(hidden, hidden, 5, 2),
                *block(hidden, hidden, 3, 1),
            )
            self.gru = None
            self.out = nn.Linear(2 * hidden, embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        """Embed a batch of windows.

        Parameters
        ----------
        x : Tensor, shape (B, T, C)
            Windows of this encoder's modality (``(T, C)`` from the registry).

        Returns
        -------
        Tensor, shape (B, embed_dim)

        Raises
        ------
        ShapeError
            If ``x`` does not have shape ``(B, T, C)``.
        DataError
            If ``x`` holds NaN or infinite values.
        """
        check_window_batch(x, self.modality, self.window, self.channels)
        h = self.conv(x.transpose(1, 2))  # (B, hidden, T')
        if self.gru is not None:
            _, last = self.gru(h.transpose(1, 2).contiguous())  # last: (1, B, hidden)
            out: Tensor = self.out(self.drop(last[-1]))
            return out
        if self.arch == "tconv":
            return self.out(self.drop(h.flatten(1)))  # type: ignore[no-any-return]
        pooled = torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1)
        out = self.out(self.drop(pooled))
        return out


def _check_dropout(p: float) -> None:
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 <= p < 1.0:
        raise ConfigError(f"dropout must be a number in [0, 1); got {p!r}")


ARCHITECTURES: tuple[str, ...] = ("conv", "tconv", "gru", "paper")
"""Encoder architectures :func:`build_encoder` knows."""


@dataclass(frozen=True)
class EncoderSpec:
    """How a model's encoders are built; every node and the coordinator build the same.

    Attributes
    ----------
    arch : str
        One of :data:`ARCHITECTURES`.
    embed_dim : int
        Output size of every encoder.
    dropout : float
        Dropout probability inside the encoder (the paper's: 0.5), in ``[0, 1)``.
    norm : {"group", "batch"} or None
        Normalisation layers; None: the architecture's default (``"batch"`` for ``"paper"``,
        ``"group"`` otherwise).
    hidden : int
        Channels of the convolutions of ``"conv"``, ``"tconv"`` and ``"gru"`` (a multiple
        of 8; the paper's networks have their own widths).
    """

    arch: str = "conv"
    embed_dim: int = 128
    dropout: float = 0.0
    norm: str | None = None
    hidden: int = DEFAULT_HIDDEN

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ConfigError(
                f"unknown encoder {self.arch!r}; valid encoders are: {', '.join(ARCHITECTURES)}"
            )
        _check_positive_int("embed_dim", self.embed_dim)
        _check_dropout(self.dropout)
        _check_positive_int("hidden", self.hidden)
        if self.hidden % _GROUPS:
            raise ConfigError(f"hidden must be a multiple of {_GROUPS}; got {self.hidden}")
        if self.norm not in (None, "group", "batch"):
            raise ConfigError(f"norm must be 'group' or 'batch'; got {self.norm!r}")


def build_encoder(modality: str, spec: EncoderSpec | None = None) -> nn.Module:
    """The encoder of ``modality`` that ``spec`` describes (default: ``EncoderSpec()``).

    Returns
    -------
    nn.Module
        Maps ``(B, T, C)`` to ``(B, spec.embed_dim)``; has ``modality``, ``window``,
        ``channels`` and ``embed_dim`` attributes.

    Raises
    ------
    UnknownModalityError, ConfigError
        On an unknown modality or an invalid spec.
    """
    spec = spec or EncoderSpec()
    if spec.arch == "paper":
        from mmbind.binding.paper_encoders import PaperEncoder

        return PaperEncoder(
            modality, spec.embed_dim, dropout=spec.dropout, norm=spec.norm or "batch"
        )
    return SensorEncoder(
        modality,
        spec.embed_dim,
        spec.hidden,
        arch=spec.arch,
        norm=spec.norm or "group",
        dropout=spec.dropout,
    )


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
