"""The MMBind paper's sensor encoders: convolutions over the raw window, then a GRU.

Ouyang et al., "MMBind", SenSys 2025, encode UTD-MHAD's modalities with the networks of the
nesl/multimodal-bind repository (``UTD/UTD-acc-bind/train/models/single_modality.py``):

* IMU (acc, gyro; one sensing point, ``T x A`` = 120 x 3): ``Conv2d(1, 64, 2)`` over (time,
  axes), then ``Conv2d(64, 32, 1)`` and ``Conv2d(32, 16, 1)``, each with BatchNorm and ReLU, the
  first two followed by dropout; the 16 feature maps, each flattened to ``(T - 1)(A - 1)`` =
  238 values, are the 16 steps of a 2-layer GRU with 120 units, whose 16 outputs are
  concatenated: 1,920 features.
* skeleton (20 joints x 3 axes x 40 frames): ``Conv3d(1, 64, [5, 5, 2])`` over (time, joints,
  axes), then ``Conv3d`` with kernels ``[3, 3, 1]`` to 64, 64, 32 and 16 maps (BatchNorm, ReLU,
  dropout after all but the last); the 16 maps (each 28 x 8 x 2 = 448 values) feed the same
  GRU: 1,920 features.

The GRU thus steps over feature maps, each step seeing the whole (convolved) window. This
module builds the same networks for any registered modality from its geometry (one-point
sensors get the 2-D network, multi-point sensors the 3-D one; kernels are clipped to small
windows), and adds a linear map from the 1,920 features to ``embed_dim`` unless that is 1,920.
"""

from __future__ import annotations

from torch import Tensor, nn

from mmbind.binding.encoders import check_window_batch
from mmbind.errors import ConfigError
from mmbind.modalities import get_modality

__all__ = ["PaperEncoder"]

_MAPS = 16  # feature maps = GRU steps
_GRU_UNITS = 120
_GRU_LAYERS = 2


def _norm(kind: str, channels: int, dims: int) -> nn.Module:
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    return nn.BatchNorm2d(channels) if dims == 2 else nn.BatchNorm3d(channels)


class PaperEncoder(nn.Module):
    """The paper's conv + GRU encoder of one registered modality (see the module docstring).

    Parameters
    ----------
    modality : str
        A registered modality; its geometry (``points``, ``axes``) picks the 2-D or 3-D network.
    embed_dim : int
        Output size; ``1920`` keeps the paper's features as they are, anything else adds
        ``Linear(1920, embed_dim)``.
    dropout : float
        Dropout probability after the convolutions (the paper: 0.5).
    norm : {"batch", "group"}
        BatchNorm as the paper, or GroupNorm (no running statistics).

    Raises
    ------
    UnknownModalityError
        ``modality`` is not registered.
    ConfigError
        Invalid ``embed_dim``, ``dropout`` or ``norm``.
    """

    def __init__(
        self, modality: str, embed_dim: int = 1920, *, dropout: float = 0.5, norm: str = "batch"
    ) -> None:
        super().__init__()
        spec = get_modality(modality)
        if isinstance(embed_dim, bool) or not isinstance(embed_dim, int) or embed_dim < 1:
            raise ConfigError(f"embed_dim must be a positive integer; got {embed_dim!r}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1); got {dropout!r}")
        if norm not in ("batch", "group"):
            raise ConfigError(f"norm must be 'batch' or 'group'; got {norm!r}")
        self.modality: str = spec.name
        self.window: int = spec.window
        self.channels: int = spec.channels
        self.embed_dim: int = embed_dim
        self.points: int = spec.points
        self.axes: int = spec.axes

        def stage(conv: nn.Module, out: int, dims: int, drop: bool) -> list[nn.Module]:
            layers = [conv, _norm(norm, out, dims), nn.ReLU()]
            return [*layers, nn.Dropout(dropout)] if drop else layers

        t, p, a = spec.window, spec.points, spec.axes
        if p == 1:
            kt, ka = min(2, t), min(2, a)
            self.conv = nn.Sequential(
                *stage(nn.Conv2d(1, 64, (kt, ka)), 64, 2, True),
                *stage(nn.Conv2d(64, 32, 1), 32, 2, True),
                *stage(nn.Conv2d(32, _MAPS, 1), _MAPS, 2, False),
            )
            step = (t - kt + 1) * (a - ka + 1)
        else:
            k1 = (min(5, t), min(5, p), min(2, a))
            dims = [t - k1[0] + 1, p - k1[1] + 1, a - k1[2] + 1]
            layers = stage(nn.Conv3d(1, 64, k1), 64, 3, True)
            widths = (64, 64, 32, _MAPS)
            c_in = 64
            for i, c_out in enumerate(widths):
                k = (min(3, dims[0]), min(3, dims[1]), 1)
                dims = [dims[0] - k[0] + 1, dims[1] - k[1] + 1, dims[2]]
                layers += stage(nn.Conv3d(c_in, c_out, k), c_out, 3, i < len(widths) - 1)
                c_in = c_out
            self.conv = nn.Sequential(*layers)
            step = dims[0] * dims[1] * dims[2]
        self.gru = nn.GRU(step, _GRU_UNITS, _GRU_LAYERS, batch_first=True)
        width = _MAPS * _GRU_UNITS
        self.out: nn.Module = nn.Identity() if embed_dim == width else nn.Linear(width, embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        """Embed a batch of windows.

        Parameters
        ----------
        x : Tensor, shape (B, T, C)
            ``C = points * axes``, point-major (``channel = axes * point + axis``).

        Returns
        -------
        Tensor, shape (B, embed_dim)

        Raises
        ------
        ShapeError, DataError
            As :func:`~mmbind.binding.encoders.check_window_batch`.
        """
        check_window_batch(x, self.modality, self.window, self.channels)
        b = x.shape[0]
        if self.points == 1:
            h = self.conv(x.unsqueeze(1))  # (B, 16, T', A')
        else:
            h = self.conv(x.reshape(b, 1, self.window, self.points, self.axes))
        steps, _ = self.gru(h.reshape(b, _MAPS, -1))  # (B, 16, 120)
        out: Tensor = self.out(steps.reshape(b, -1))
        return out
