"""Tests of the training loops, prediction and metrics on a small separable toy problem."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

from mmbind.binding.autoencoder import Autoencoder
from mmbind.binding.encoders import EncoderSpec, SensorEncoder
from mmbind.binding.fusion import FusionModel
from mmbind.binding.training import (
    align,
    classification_metrics,
    embed_all,
    finetune,
    predict,
    pretrain_autoencoder,
    warp_windows,
)
from mmbind.binding.weighted_contrastive import WeightedMultiViewContrastiveLoss
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


def test_finetune_average_last_is_the_mean_of_the_last_epochs_weights() -> None:
    # Prepare
    data, labels = toy_data()
    kwargs = {"batch_size": 16, "lr": 3e-3, "seed": 0}
    plain, last1, last3 = fresh_model(), fresh_model(), fresh_model()
    # Execute
    finetune(plain, data, labels, epochs=4, **kwargs)  # type: ignore[arg-type]
    finetune(last1, data, labels, epochs=4, average_last=1, **kwargs)  # type: ignore[arg-type]
    finetune(last3, data, labels, epochs=4, average_last=3, **kwargs)  # type: ignore[arg-type]
    reference = _hand_swa_reference(data, labels, epochs=4, last=3, **kwargs)  # type: ignore[arg-type]
    # Assert: K = 1 is the plain run; K = 3 the mean of the weights after epochs 2, 3 and 4
    for k, v in plain.state_dict().items():
        assert torch.equal(v, last1.state_dict()[k])
    for k, v in last3.state_dict().items():
        assert torch.allclose(v, reference[k], atol=1e-6), k
    weight = "classifier.0.weight"
    assert not torch.equal(last3.state_dict()[weight], plain.state_dict()[weight])


def _hand_swa_reference(
    data: dict[str, torch.Tensor],
    labels: torch.Tensor,
    *,
    epochs: int,
    last: int,
    batch_size: int,
    lr: float,
    seed: int,
) -> dict[str, torch.Tensor]:
    """AdamW fine-tuning written out, keeping the weights after each epoch; their mean."""
    model = fresh_model()
    assert model.classifier is not None
    gen = torch.Generator().manual_seed(seed)
    enc = [p for m in data for p in model.encoders[m].parameters()]
    opt = torch.optim.AdamW(
        [{"params": list(model.classifier.parameters()), "lr": lr}, {"params": enc, "lr": lr}],
        lr=lr,
        weight_decay=0.01,
    )
    kept = []
    for _ in range(epochs):
        for idx in torch.split(torch.randperm(N, generator=gen), batch_size):
            logits = model.classify(model.features({m: x[idx] for m, x in data.items()}))
            loss = torch.nn.functional.cross_entropy(logits, labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        kept.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    tail = kept[-last:]
    return {k: sum(s[k] for s in tail) / len(tail) for k in tail[0]}


def test_finetune_cosine_schedule_anneals_the_learning_rate_to_zero(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare: record the classifier's learning rate at every optimiser step
    data, labels = toy_data()
    seen: list[float] = []
    original = torch.optim.AdamW.step

    def record(self: torch.optim.AdamW, *args: object, **kwargs: object) -> object:
        seen.append(float(self.param_groups[0]["lr"]))
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(torch.optim.AdamW, "step", record)
    # Execute
    finetune(
        fresh_model(), data, labels, epochs=2, batch_size=16, lr=1e-2, seed=0, schedule="cosine"
    )
    # Assert: 2 epochs x 3 batches; lr_t = lr * (1 + cos(pi t / 6)) / 2
    assert seen == pytest.approx([1e-2 * 0.5 * (1 + math.cos(math.pi * t / 6)) for t in range(6)])


def test_finetune_average_last_recomputes_batch_norm_statistics() -> None:
    # Prepare
    data, labels = toy_data()
    torch.manual_seed(0)
    spec = EncoderSpec(embed_dim=32, norm="batch")
    model = FusionModel(["acc", "gyro"], 32, 16, num_classes=CLASSES, encoder=spec)
    # Execute
    finetune(model, data, labels, epochs=3, batch_size=16, lr=3e-3, seed=0, average_last=2)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    # Assert: statistics from one pass over the 48 samples (3 batches) with the averaged weights
    assert norms and all(int(m.num_batches_tracked) == 3 for m in norms)
    assert all(m.momentum == 0.1 for m in norms)  # restored after the cumulative pass
    assert torch.isfinite(predict(model, data).float()).all()


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
    for bad in (
        {"epochs": 0},
        {"batch_size": 0},
        {"lr": -1.0},
        {"lr": float("nan")},
        {"schedule": "linear"},
        {"average_last": -1},
        {"average_last": 2},  # more than the epochs
    ):
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


ALIGN_KW: dict[str, float | int] = {"batch_size": 16, "lr": 1e-3, "temperature": 0.1, "seed": 0}


def test_align_own_present_all_true_is_bit_identical_to_the_plain_path() -> None:
    # Prepare: partner rows for both an own modality (ignored) and a masked view, weights,
    # augmentation and several epochs: every part of the plain path is exercised.
    data, _ = toy_data()
    own = {"acc": data["acc"]}
    gyro = torch.randn(N, 16, generator=torch.Generator().manual_seed(5))
    partner = {"gyro": gyro, "acc": torch.randn(N, 16)}
    half = torch.arange(N) % 3 != 0
    weights = torch.linspace(0.1, 1.0, N)
    kwargs = {**ALIGN_KW, "epochs": 3, "augment": 0.5, "partner_present": {"gyro": half}}
    plain, flagged = fresh_model(), fresh_model()
    # Execute
    a = align(plain, own, partner, weights, **kwargs)  # type: ignore[arg-type]
    b = align(
        flagged,
        own,
        partner,
        weights,
        own_present={"acc": torch.ones(N, dtype=torch.bool)},
        **kwargs,  # type: ignore[arg-type]
    )
    # Assert
    assert a == b
    for (name, p), q in zip(plain.state_dict().items(), flagged.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


def test_align_own_present_matches_a_hand_computed_loss() -> None:
    # Prepare: 6 tuples, views (acc, gyro). Row 1 lacks its acc window but has a partner acc
    # embedding; row 3 lacks acc and has no partner (masked); row 4 lacks gyro (masked).
    data, _ = toy_data()
    n = 6
    own = {"acc": data["acc"][:n].clone(), "gyro": data["gyro"][:n].clone()}
    acc_rows = torch.tensor([True, False, True, False, True, True])
    gyro_rows = torch.tensor([True, True, True, True, False, True])
    own["acc"][~acc_rows] = float("nan")
    own["gyro"][~gyro_rows] = 1e6
    partner_acc = torch.randn(n, 16, generator=torch.Generator().manual_seed(3))
    partner_rows = torch.tensor([False, True, False, False, False, False])
    weights = torch.tensor([1.0, 0.5, 0.8, 1.0, 0.3, 0.9])
    model = fresh_model()
    reference = fresh_model()
    # Execute: one batch, one epoch: the returned loss is the loss at the initial weights.
    got = align(
        model,
        own,
        {"acc": partner_acc},
        weights,
        partner_present={"acc": partner_rows},
        own_present={"acc": acc_rows, "gyro": gyro_rows},
        **{**ALIGN_KW, "epochs": 1, "batch_size": 8},  # type: ignore[arg-type]
    )
    # Assert: the views built by hand, in row order (the loss does not depend on it).
    reference.train()
    with torch.no_grad():
        acc_view = torch.zeros(n, 16)
        acc_view[acc_rows] = reference.embed("acc", own["acc"][acc_rows])
        acc_view[1] = torch.nn.functional.normalize(partner_acc[1], dim=0)
        gyro_view = torch.zeros(n, 16)
        gyro_view[gyro_rows] = reference.embed("gyro", own["gyro"][gyro_rows])
        present = torch.stack([acc_rows | partner_rows, gyro_rows], dim=1)
        want = WeightedMultiViewContrastiveLoss(0.1)(
            torch.stack([acc_view, gyro_view], dim=1), present, weights
        )
    assert math.isfinite(got)
    assert got == pytest.approx(float(want), rel=1e-5, abs=1e-6)


def test_align_absent_own_rows_give_no_gradient() -> None:
    # Prepare: a quarter of the acc rows absent; their windows hold NaN, zeros or noise.
    data, _ = toy_data()
    absent = torch.arange(N) % 4 == 1
    rows = {"acc": ~absent}
    variants = []
    for fill in (float("nan"), 0.0, 123.0):
        acc = data["acc"].clone()
        acc[absent] = fill
        variants.append({"acc": acc, "gyro": data["gyro"]})
    kwargs = {**ALIGN_KW, "epochs": 2, "augment": 0.3}
    models = [fresh_model() for _ in variants]
    # Execute
    losses = [
        align(model, own, {}, torch.ones(N), own_present=rows, **kwargs)  # type: ignore[arg-type]
        for model, own in zip(models, variants, strict=True)
    ]
    # Assert: finite, and the absent rows' contents change nothing at all.
    assert all(math.isfinite(v) and v > 0 for v in losses)
    for model in models:
        assert all(torch.isfinite(p).all() for p in model.parameters())
        for p, q in zip(model.parameters(), models[0].parameters(), strict=True):
            assert torch.equal(p, q)
    assert losses[0] == losses[1] == losses[2]


def test_align_own_present_single_backward_step_ignores_absent_rows() -> None:
    # Prepare: one batch; row 0's acc window is NaN and absent.
    data, _ = toy_data()
    own = {"acc": data["acc"][:8].clone(), "gyro": data["gyro"][:8]}
    own["acc"][0] = float("nan")
    rows = torch.ones(8, dtype=torch.bool)
    rows[0] = False
    model = fresh_model()
    before = model.modality_state("acc")
    # Execute
    loss = align(
        model,
        own,
        {},
        torch.ones(8),
        own_present={"acc": rows},
        **{**ALIGN_KW, "epochs": 1, "batch_size": 8},  # type: ignore[arg-type]
    )
    # Assert: a finite loss and one finite update of the acc encoder.
    assert math.isfinite(loss) and loss > 0
    after = model.modality_state("acc")
    assert all(torch.isfinite(v).all() for v in after.values())
    assert any(not torch.equal(v, before[k]) for k, v in after.items())


def test_align_batches_without_own_windows_train_nothing() -> None:
    # Prepare: no acc window at all; the acc view comes from partner embeddings only.
    data, _ = toy_data()
    none = torch.zeros(N, dtype=torch.bool)
    partner = {"acc": torch.randn(N, 16), "gyro": torch.randn(N, 16)}
    model = fresh_model()
    before = model.state_dict()
    # Execute
    loss = align(
        model,
        {"acc": torch.full_like(data["acc"], float("nan"))},
        partner,
        torch.ones(N),
        own_present={"acc": none},
        **{**ALIGN_KW, "epochs": 1},  # type: ignore[arg-type]
    )
    # Assert: the fixed views still give a loss; no parameter moved.
    assert math.isfinite(loss) and loss > 0
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_align_own_present_validation() -> None:
    data, _ = toy_data()
    kwargs = {**ALIGN_KW, "epochs": 1}
    ok = torch.ones(N, dtype=torch.bool)
    cases = [
        ({"acc": ok[:-1]}, r"own_present\['acc'\] must be a bool tensor of shape \(48,\)"),
        ({"gyro": ok.float()}, r"own_present\['gyro'\] must be a bool tensor.*torch.float32"),
        ({"acc": ok.unsqueeze(1)}, r"shape \(48,\); got torch.bool \(48, 1\)"),
        ({"acc": [True] * N}, r"own_present\['acc'\] .* got list"),
        ({"skeleton": ok}, r"own_present names 'skeleton', which has no own windows"),
    ]
    for bad, message in cases:
        with pytest.raises(ShapeError, match=message):
            align(fresh_model(), data, {}, torch.ones(N), own_present=bad, **kwargs)  # type: ignore[arg-type]


def _two_modal_model(seed: int = 0) -> FusionModel:
    torch.manual_seed(seed)
    return FusionModel(["acc", "gyro"], embed_dim=16, proj_dim=8, num_classes=3)


def test_partner_grads_are_the_gradient_of_the_loss_wrt_the_partner_embeddings() -> None:
    # Prepare: one batch (batch size >= N), one epoch, one optimiser step
    torch.manual_seed(1)
    x = torch.randn(6, 120, 3)
    z = torch.randn(6, 8)
    present = torch.tensor([True, True, False, True, True, True])
    model = _two_modal_model()
    reference = _two_modal_model()
    w = torch.tensor([1.0, 0.5, 1.0, 0.8, 1.0, 0.2])

    # Execute
    grads: dict[str, torch.Tensor] = {}
    align(
        model, {"acc": x}, {"gyro": z}, w, epochs=1, batch_size=8, lr=1e-3, temperature=0.1,
        seed=0, partner_present={"gyro": present}, partner_grads=grads,
    )  # fmt: skip

    # Assert: the hand-built loss on the same views (batch order does not matter) agrees
    leaf = torch.where(present.unsqueeze(1), z, torch.zeros_like(z)).requires_grad_(True)
    views = torch.stack(
        [reference.embed("acc", x), torch.nn.functional.normalize(leaf, dim=-1)], dim=1
    )
    mask = torch.stack([torch.ones(6, dtype=torch.bool), present], dim=1)
    WeightedMultiViewContrastiveLoss(0.1)(views, mask, w).backward()
    assert leaf.grad is not None
    torch.testing.assert_close(grads["gyro"], leaf.grad, rtol=1e-4, atol=1e-6)
    assert torch.all(grads["gyro"][~present] == 0) and grads["gyro"][present].abs().sum() > 0


def test_routed_gradients_move_the_partner_encoder_as_joint_training_would() -> None:
    # Prepare: node A holds acc and gets node B's gyro embeddings of its bound rows; B holds
    # gyro only, so its own loss has no positives and only the routed gradient trains it.
    torch.manual_seed(2)
    xa, xb = torch.randn(5, 120, 3), torch.randn(7, 120, 3)
    bound = torch.tensor([3, 0, 6, 3, 1])  # A's row i is bound to B's row bound[i]
    a, b = _two_modal_model(), _two_modal_model(seed=1)
    joint_b = _two_modal_model(seed=1)
    with torch.no_grad():
        zb = b.embed("gyro", xb[bound])
    grads: dict[str, torch.Tensor] = {}
    one = torch.ones(5)
    align(
        a, {"acc": xa}, {"gyro": zb}, one, epochs=1, batch_size=8, lr=1e-3, temperature=0.1,
        seed=0, partner_grads=grads,
    )  # fmt: skip
    rows, inverse = torch.unique(bound, return_inverse=True)
    routed = torch.zeros(len(rows), 8).index_add_(0, inverse, grads["gyro"])
    before = {k: v.clone() for k, v in b.encoders["gyro"].state_dict().items()}

    # Execute: B's next alignment step carries the routed gradients
    align(
        b, {"gyro": xb}, {}, torch.ones(7), epochs=1, batch_size=64, lr=1e-4, temperature=0.1,
        seed=0, weight_decay=0.0, injected={"gyro": (rows, routed)},
    )  # fmt: skip

    # Assert: Adam's first step moves each weight against the sign of its gradient; the
    # gradient B followed is the one of A's loss through B's encoder (split learning)
    reference = _two_modal_model()
    views = torch.stack([reference.embed("acc", xa), joint_b.embed("gyro", xb[bound])], dim=1)
    WeightedMultiViewContrastiveLoss(0.1)(views, torch.ones(5, 2, dtype=torch.bool), one).backward()
    for name, p in joint_b.encoders["gyro"].named_parameters():
        assert p.grad is not None
        moved = b.encoders["gyro"].state_dict()[name] - before[name]
        strong = p.grad.abs() > 1e-3 * p.grad.abs().max()
        assert torch.equal(torch.sign(moved[strong]), -torch.sign(p.grad[strong])), name


def test_injected_gradients_are_validated() -> None:
    model = _two_modal_model()
    x = torch.randn(4, 120, 3)
    kwargs = dict(epochs=1, batch_size=4, lr=1e-3, temperature=0.1, seed=0)
    bad = {
        "gyro": (torch.tensor([0]), torch.zeros(1, 8)),  # not an own modality
    }
    with pytest.raises(ShapeError, match="no own windows"):
        align(model, {"acc": x}, {}, torch.ones(4), injected=bad, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ShapeError, match=r"rows must lie in \[0, 4\)"):
        align(
            model, {"acc": x}, {}, torch.ones(4),
            injected={"acc": (torch.tensor([9]), torch.zeros(1, 8))}, **kwargs,  # type: ignore[arg-type]
        )  # fmt: skip
    with pytest.raises(DataError, match="NaN"):
        align(
            model, {"acc": x}, {}, torch.ones(4),
            injected={"acc": (torch.tensor([1]), torch.full((1, 8), float("nan")))}, **kwargs,  # type: ignore[arg-type]
        )  # fmt: skip


def test_warp_windows_stretches_and_shifts_time_and_is_seeded() -> None:
    # Prepare: a ramp, so a warped window is again monotone with values inside the range
    x = torch.linspace(0, 1, 120).reshape(1, 120, 1).repeat(4, 1, 3)

    # Execute
    zero = warp_windows(x, 0.0, torch.Generator().manual_seed(0))
    a = warp_windows(x, 1.0, torch.Generator().manual_seed(0))
    b = warp_windows(x, 1.0, torch.Generator().manual_seed(0))

    # Assert
    assert zero is x
    torch.testing.assert_close(a, b)
    assert a.shape == x.shape and float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert bool((a[:, 1:] >= a[:, :-1] - 1e-6).all())
    assert not torch.allclose(a, x)
    torch.testing.assert_close(a[:, :, 0], a[:, :, 2])  # one warp per sample, all channels


def test_self_views_add_an_augmented_positive_per_own_modality() -> None:
    # Prepare: one modality only, no partner: without self views no anchor has a positive
    torch.manual_seed(0)
    x = torch.randn(8, 120, 3)
    kwargs = dict(epochs=1, batch_size=8, lr=1e-3, temperature=0.1, seed=0, warp=1.0, augment=1.0)
    kwargs["weight_decay"] = 0.0
    plain, with_self = _two_modal_model(), _two_modal_model()
    before = {k: v.clone() for k, v in plain.state_dict().items()}

    # Execute
    loss_plain = align(plain, {"acc": x}, {}, torch.ones(8), **kwargs)  # type: ignore[arg-type]
    loss_self = align(with_self, {"acc": x}, {}, torch.ones(8), self_views=True, **kwargs)  # type: ignore[arg-type]

    # Assert: the plain call trains nothing; self views give a loss and move the encoder
    assert loss_plain == 0.0 and loss_self > 0.0
    assert all(torch.equal(v, before[k]) for k, v in plain.state_dict().items())
    assert not torch.equal(with_self.encoders["acc"].out.weight, before["encoders.acc.out.weight"])
