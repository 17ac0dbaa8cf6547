"""Reconstruction autoencoder for federated unimodal pretraining (docs/design.md, phase 2).

The paper pretrains the encoder of the shared modality as an autoencoder before binding, so that
cosine similarity of its embeddings measures how alike two windows are (Ouyang et al., "MMBind",
SenSys 2025, Sec. 4.1). The decoder mirrors :class:`~mmbind.binding.encoders.SensorEncoder`: a
linear map from the embedding to a short sequence, then upsampling convolutions back to the
window length.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from mmbind.binding.encoders import EncoderSpec, build_encoder

__all__ = ["Autoencoder"]

_DECODER_CHANNELS = 32
_UPSAMPLINGS = 2


class Autoencoder(nn.Module):
    """Encoder plus decoder that reconstructs windows from their embedding.

    The encoder is held by reference (``self.encoder is encoder``), so training the autoencoder
    trains the very module that is later copied into the fusion model; its state_dict keys are
    ``encoder.*`` and ``decoder.*``.

    Decoder: ``Linear(D, 32 * L)`` with ``L = ceil(T / 4)``, reshaped to ``(32, L)``; two blocks
    of ``x2 nearest upsampling - Conv1d(k=5) - GroupNorm - ReLU``; ``Conv1d(32, C, 5)``; cut to
    ``T`` steps.

    Parameters
    ----------
    encoder : nn.Module
        The encoder to pretrain (from :func:`~mmbind.binding.encoders.build_encoder`); its
        ``modality``, ``window``, ``channels`` and ``embed_dim`` fix the decoder.
    """

    @classmethod
    def build(cls, modality: str, spec: EncoderSpec | None = None) -> Autoencoder:
        """The autoencoder of a fresh encoder of ``modality`` built as ``spec`` says."""
        return cls(build_encoder(modality, spec))

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.modality: str = str(encoder.modality)
        self.window: int = int(encoder.window)  # type: ignore[arg-type]
        self.channels: int = int(encoder.channels)  # type: ignore[arg-type]
        embed_dim = int(encoder.embed_dim)  # type: ignore[arg-type]
        ch = _DECODER_CHANNELS
        scale = 2**_UPSAMPLINGS
        self._seed_len: int = -(-self.window // scale)
        self.expand = nn.Linear(embed_dim, ch * self._seed_len)
        blocks: list[nn.Module] = []
        for _ in range(_UPSAMPLINGS):
            blocks += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv1d(ch, ch, kernel_size=5, padding=2),
                nn.GroupNorm(8, ch),
                nn.ReLU(),
            ]
        blocks.append(nn.Conv1d(ch, self.channels, kernel_size=5, padding=2))
        self.decoder = nn.Sequential(*blocks)

    def decode(self, z: Tensor) -> Tensor:
        """Map embeddings ``(B, D)`` to windows ``(B, T, C)``."""
        h = self.expand(z).view(z.shape[0], _DECODER_CHANNELS, self._seed_len)
        out: Tensor = self.decoder(h)[:, :, : self.window]
        return out.transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        """Reconstruct a batch of windows.

        Parameters
        ----------
        x : Tensor, shape (B, T, C)

        Returns
        -------
        Tensor, shape (B, T, C)

        Raises
        ------
        ShapeError, DataError
            As :meth:`SensorEncoder.forward`.
        """
        return self.decode(self.encoder(x))

    def reconstruction_loss(self, x: Tensor) -> Tensor:
        """Mean squared reconstruction error over all elements of ``x`` ``(B, T, C)``; a scalar.

        Raises
        ------
        ShapeError, DataError
            As :meth:`SensorEncoder.forward`.
        """
        return F.mse_loss(self(x), x)
