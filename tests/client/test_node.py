"""LocalNode: a node's local steps on its own data."""

from __future__ import annotations

import numpy as np
import torch

from mmbind.binding.encoders import EncoderSpec
from mmbind.binding.fusion import FusionModel
from mmbind.client.data.synthetic import make_synthetic
from mmbind.client.node import LocalNode
from mmbind.run_config import RunConfig


def test_partner_features_and_binding_embeddings_are_computed_in_eval_mode() -> None:
    # Prepare: a model with dropout and batch norm, left in train mode by the caller
    data = make_synthetic(num_classes=3, subjects=(1,), trials=2, seed=0, modalities=("acc",))
    node = LocalNode("A", data, RunConfig(), labelled=False)
    torch.manual_seed(0)
    spec = EncoderSpec("conv", 16, dropout=0.5, norm="batch")
    model = FusionModel(["acc"], 16, 8, 3, encoder=spec)
    model.train()
    rows = np.arange(len(data), dtype=np.int64)

    # Execute
    first = node.features(model, "acc", rows)
    second = node.features(model, "acc", rows[::-1].copy())[::-1]
    emb = node.embed(model, "acc")

    # Assert: no dropout noise, no batch statistics (row order does not matter), mode restored
    np.testing.assert_allclose(first, second, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(emb, node.embed(model, "acc"))
    assert model.training
