"""Tests of the training loops, prediction and metrics on a small separable toy problem."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from mmbind.binding.autoencoder import Autoencoder
from mmbind.binding.encoders import SensorEncoder
from mmbind.binding.fusion import FusionModel
from mmbind.binding.training import (
    align,
    classification_metrics,
    embed_all,
    finetune,
    predict,
    pretrain_autoencoder,
)
from mmbind.errors import ConfigError, DataError, ShapeError

N = 48
CLASSES = 3


def toy_data(seed: int = 0) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Class k: a sine of frequency k+1 on acc and a cosine on gyro, random phase, noise."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(N) % CLASSES
    t = torch.linspace(0, 1, 120)
    phase = torch.rand(N, 1, generator=gen) * 6.28
    freq = (labels.float() + 1.0).unsqueeze(1) * 2.0
    base = torch.sin(6.28 * freq * t + phase)
    acc = torch.stack([base, 0.5 * base, -base], dim=2)
    gyro = torch.stack([torch.cos(6.28 * freq * t + phase)] * 3, dim=2)
    acc = acc + 0.1 * torch.randn(acc.shape, generator=gen)
    gyro = gyro + 0.1 * torch.randn(gyro.shape, generator=gen)
    return {"acc": acc, "gyro": gyro}, labels


def fresh_model(num_classes: int | None = CLASSES) -> FusionModel:
    torch.manual_seed(0)
    return FusionModel(["acc", "gyro"], embed_dim=32, proj_dim=16, num_classes=num_classes)


def test_pretrain_reduces_reconstruction_loss_and_is_deterministic() -> None:
    # Prepare
    data, _ = toy_data()
    torch.manual_seed(0)
    ae = Autoencoder(SensorEncoder("acc", embed_dim=32))
    torch.manual_seed(0)
    twin = Autoencoder(SensorEncoder("acc", embed_dim=32))
    # Execute
    first = pretrain_autoencoder(ae, data["acc"], epochs=1, batch_size=16, lr=3e-3, seed=1)
    later = pretrain_autoencoder(ae, data["acc"], epochs=8, batch_size=16, lr=3e-3, seed=1)
    again = pretrain_autoencoder(twin, data["acc"], epochs=1, batch_size=16, lr=3e-3, seed=1)
    # Assert
    assert later < first
    assert again == first


def test_align_natural_tuples_reduces_loss() -> None:
    data, _ = toy_data()
    model = fresh_model()
    kwargs = {"batch_size": 16, "lr": 3e-3, "temperature": 0.1, "seed": 0}
    first = align(model, data, {}, torch.ones(N), epochs=1, **kwargs)  # type: ignore[arg-type]
    later = align(model, data, {}, torch.ones(N), epochs=6, **kwargs)  # type: ignore[arg-type]
    assert later < first


def test_align_with_partner_embeddings_trains_only_own_modalities() -> None:
    # Prepare: gyro embeddings come from a partner's model; this node holds acc only.
    data, _ = toy_data()
    partner_model = fresh_model()
    partner = {
        "gyro": torch.from_numpy(
            embed_all(functools.partial(partner_model.embed, "gyro"), data["gyro"])
        )
    }
    model = fresh_model()
    gyro_before = model.modality_state("gyro")
    acc_before = model.modality_state("acc")
    weights = torch.linspace(0.2, 1.0, N)
    kwargs = {"batch_size": 16, "lr": 3e-3, "temperature": 0.1, "seed": 0}
    # Execute
    first = align(model, {"acc": data["acc"]}, partner, weights, epochs=1, **kwargs)  # type: ignore[arg-type]
    later = align(model, {"acc": data["acc"]}, partner, weights, epochs=6, **kwargs)  # type: ignore[arg-type]
    # Assert
    assert later < first
    for k, v in model.modality_state("gyro").items():
        assert torch.equal(v, gyro_before[k])
    assert any(not torch.equal(v, acc_before[k]) for k, v in model.modality_state("acc").items())


def test_align_own_modality_wins_over_partner() -> None:
    data, _ = toy_data()
    kwargs = {"epochs": 1, "batch_size": 16, "lr": 1e-3, "temperature": 0.1, "seed": 0}
    junk = {"acc": torch.randn(N, 16), "gyro": torch.randn(N, 16)}
    a = align(fresh_model(), data, {}, torch.ones(N), **kwargs)  # type: ignore[arg-type]
    b = align(fresh_model(), data, junk, torch.ones(N), **kwargs)  # type: ignore[arg-type]
    assert a == b


def test_align_errors() -> None:
    data, _ = toy_data()
    model = fresh_model()
    kwargs = {"epochs": 1, "batch_size": 16, "lr": 1e-3, "temperature": 0.1, "seed": 0}
    with pytest.raises(ConfigError):
        align(model, {}, {"gyro": torch.zeros(N, 16)}, torch.ones(N), **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="temperature"):
        align(model, data, {}, torch.ones(N), **{**kwargs, "temperature": 0.0})  # type: ignore[arg-type]
    with pytest.raises(ShapeError):
        align(model, data, {}, torch.ones(N - 1), **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ShapeError):
        align(model, {"acc": data["acc"]}, {"gyro": torch.zeros(N, 7)}, torch.ones(N), **kwargs)  # type: ignore[arg-type]
    with pytest.raises(DataError):
        align(model, data, {}, -torch.ones(N), **kwargs)  # type: ignore[arg-type]


def test_finetune_learns_the_toy_problem() -> None:
    # Prepare
    data, labels = toy_data()
    model = fresh_model()
    # Execute
    first = finetune(model, data, labels, epochs=1, batch_size=16, lr=3e-3, seed=0)
    later = finetune(model, data, labels, epochs=15, batch_size=16, lr=3e-3, seed=0)
    pred = predict(model, data, batch_size=20)
    acc, f1 = classification_metrics(pred, labels, CLASSES)
    # Assert
    assert later < first
    assert pred.shape == (N,) and pred.dtype == torch.int64
    assert acc >= 0.9 and f1 >= 0.9
    assert model.training  # predict restored the mode


def test_finetune_single_modality_and_frozen_encoders() -> None:
    data, labels = toy_data()
    model = fresh_model()
    before = {m: model.modality_state(m) for m in model.modalities}
    first = finetune(
        model,
        {"gyro": data["gyro"]},
        labels,
        epochs=1,
        batch_size=16,
        lr=3e-3,
        seed=0,
        freeze_encoders=True,
    )
    later = finetune(
        model,
        {"gyro": data["gyro"]},
        labels,
        epochs=10,
        batch_size=16,
        lr=3e-3,
        seed=0,
        freeze_encoders=True,
    )
    assert later < first
    for m in model.modalities:
        for k, v in model.modality_state(m).items():
            assert torch.equal(v, before[m][k])


def test_finetune_errors() -> None:
    data, labels = toy_data()
    kwargs = {"epochs": 1, "batch_size": 16, "lr": 1e-3, "seed": 0}
    with pytest.raises(ConfigError):
        finetune(fresh_model(None), data, labels, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ShapeError):
        finetune(fresh_model(), data, labels + CLASSES, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ShapeError):
        finetune(fresh_model(), data, labels[:-1], **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ShapeError):
        finetune(fresh_model(), data, labels.float(), **kwargs)  # type: ignore[arg-type]
    for bad in ({"epochs": 0}, {"batch_size": 0}, {"lr": -1.0}, {"lr": float("nan")}):
        with pytest.raises(ConfigError):
            finetune(fresh_model(), data, labels, **{**kwargs, **bad})  # type: ignore[arg-type]


def test_classification_metrics_hand_values() -> None:
    pred = torch.tensor([0, 0, 1, 2])
    target = torch.tensor([0, 1, 1, 1])
    acc, f1 = classification_metrics(pred, target, num_classes=4)
    # F1: class 0 = 2/3, class 1 = 2*1/(2+0+2) = 1/2, class 2 = 0; class 3 absent -> excluded
    assert acc == pytest.approx(0.5)
    assert f1 == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert classification_metrics(target, target, 4) == (1.0, 1.0)
    with pytest.raises(ShapeError):
        classification_metrics(pred[:3], target, 4)
    with pytest.raises(ShapeError):
        classification_metrics(pred, target, 2)
    with pytest.raises(ShapeError):
        classification_metrics(pred[:0], target[:0], 4)


def test_embed_all_matches_direct_call_and_restores_mode() -> None:
    data, _ = toy_data()
    enc = SensorEncoder("acc", embed_dim=8)
    enc.train()
    got = embed_all(enc, data["acc"], batch_size=7)
    with torch.no_grad():
        want = enc.eval()(data["acc"]).numpy()
    enc.train()
    assert got.shape == (N, 8) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert enc.training
    assert embed_all(enc, data["acc"][:0]).shape == (0, 0)


def test_align_partner_present_masks_rows() -> None:
    # Prepare: NaN rows of a partner embedding marked absent are masked out.
    data, _ = toy_data()
    kwargs = {"epochs": 1, "batch_size": 16, "lr": 1e-3, "temperature": 0.1, "seed": 0}
    own = {"acc": data["acc"]}
    gyro = torch.full((N, 16), float("nan"))
    none_present = {"gyro": torch.zeros(N, dtype=torch.bool)}
    half = torch.arange(N) % 2 == 0
    gyro_half = torch.where(half.unsqueeze(1), torch.randn(N, 16), gyro)
    # Execute
    without = align(fresh_model(), own, {}, torch.ones(N), **kwargs)  # type: ignore[arg-type]
    masked = align(
        fresh_model(), own, {"gyro": gyro}, torch.ones(N), partner_present=none_present, **kwargs
    )  # type: ignore[arg-type]
    partial = align(
        fresh_model(),
        own,
        {"gyro": gyro_half},
        torch.ones(N),
        partner_present={"gyro": half},
        **kwargs,
    )  # type: ignore[arg-type]
    # Assert
    assert masked == without == 0.0  # one view per tuple: no positives at all
    assert np.isfinite(partial) and partial > 0.0
    with pytest.raises(DataError):
        align(fresh_model(), own, {"gyro": gyro}, torch.ones(N), **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ShapeError):
        align(
            fresh_model(),
            own,
            {"gyro": gyro},
            torch.ones(N),
            partner_present={"gyro": half[:-1]},
            **kwargs,
        )  # type: ignore[arg-type]
