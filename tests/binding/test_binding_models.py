"""Tests of the encoders, the autoencoder and the fusion model."""

from __future__ import annotations

import itertools

import pytest
import torch

from mmbind.binding.autoencoder import Autoencoder
from mmbind.binding.encoders import (
    ARCHITECTURES,
    EncoderSpec,
    SensorEncoder,
    build_encoder,
    count_parameters,
)
from mmbind.binding.fusion import FusionModel
from mmbind.binding.paper_encoders import PaperEncoder
from mmbind.errors import ConfigError, DataError, ShapeError, UnknownModalityError
from mmbind.modalities import REGISTRY, get_modality

MODALITIES = sorted(REGISTRY)


def windows(modality: str, b: int, seed: int = 0) -> torch.Tensor:
    t, c = get_modality(modality).shape
    return torch.randn(b, t, c, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("modality", MODALITIES)
def test_encoder_shapes_and_size(modality: str) -> None:
    torch.manual_seed(0)
    enc = SensorEncoder(modality, embed_dim=32)
    out = enc(windows(modality, 5))
    assert out.shape == (5, 32)
    assert 50_000 <= count_parameters(SensorEncoder(modality)) <= 150_000
    assert enc(windows(modality, 0)).shape == (0, 32)


def test_encoder_wrong_shape_names_expected_and_got() -> None:
    enc = SensorEncoder("skeleton")
    with pytest.raises(ShapeError, match=r"\(B, 40, 60\).*\(2, 120, 3\)"):
        enc(torch.zeros(2, 120, 3))
    with pytest.raises(ShapeError):
        enc(torch.zeros(40, 60))
    with pytest.raises(ShapeError):
        enc(torch.zeros(2, 40, 60, dtype=torch.int64))
    bad = torch.zeros(2, 40, 60)
    bad[0, 0, 0] = float("inf")
    with pytest.raises(DataError):
        enc(bad)


def test_encoder_bad_config() -> None:
    with pytest.raises(UnknownModalityError):
        SensorEncoder("lidar")
    with pytest.raises(ConfigError):
        SensorEncoder("acc", embed_dim=0)
    with pytest.raises(ConfigError):
        SensorEncoder("acc", hidden=60)
    with pytest.raises(ConfigError, match="arch"):
        SensorEncoder("acc", arch="lstm")
    with pytest.raises(ConfigError, match="norm"):
        SensorEncoder("acc", norm="layer")


@pytest.mark.parametrize(
    ("modality", "arch", "norm"),
    list(itertools.product(MODALITIES, ("conv", "gru"), ("group", "batch"))),
)
def test_encoder_variants_shapes_and_size(modality: str, arch: str, norm: str) -> None:
    torch.manual_seed(0)
    enc = SensorEncoder(modality, embed_dim=24, arch=arch, norm=norm)
    assert (enc.arch, enc.norm) == (arch, norm)
    out = enc(windows(modality, 4))
    assert out.shape == (4, 24)
    assert bool(torch.isfinite(out).all())
    assert 50_000 <= count_parameters(SensorEncoder(modality, arch=arch, norm=norm)) <= 150_000
    # Whatever the variant, the embedding depends on the input.
    assert not torch.allclose(out[0], out[1])


@pytest.mark.parametrize("modality", MODALITIES)
def test_autoencoder_shapes_and_shared_encoder(modality: str) -> None:
    enc = SensorEncoder(modality, embed_dim=16)
    ae = Autoencoder(enc)
    x = windows(modality, 3)
    assert ae(x).shape == x.shape
    loss = ae.reconstruction_loss(x)
    assert loss.ndim == 0
    loss.backward()
    assert ae.encoder is enc
    assert enc.out.weight.grad is not None
    with pytest.raises(ShapeError):
        ae.reconstruction_loss(x[:, :-1])


def test_fusion_keys_and_registry_order() -> None:
    model = FusionModel(["skeleton", "acc"], embed_dim=16, proj_dim=8, num_classes=4)
    assert model.modalities == ("acc", "skeleton")
    prefixes = {k.split(".")[0] + "." + k.split(".")[1] for k in model.state_dict() if "." in k}
    assert prefixes >= {"encoders.acc", "encoders.skeleton", "heads.acc", "heads.skeleton"}
    assert all(
        k.startswith(("encoders.acc.", "encoders.skeleton.", "heads.acc.", "heads.skeleton."))
        or k.startswith("classifier.")
        for k in model.state_dict()
    )
    assert not any(k.startswith("classifier.") for k in FusionModel(["acc"]).state_dict())


def test_fusion_accepts_any_subset_and_zero_fills() -> None:
    mods = ("acc", "gyro", "skeleton")
    model = FusionModel(mods, embed_dim=16, proj_dim=8, num_classes=3).eval()
    full = {m: windows(m, 4, seed=i) for i, m in enumerate(mods)}
    for r in range(1, 4):
        for subset in itertools.combinations(mods, r):
            inputs = {m: full[m] for m in subset}
            feats = model.features(inputs)
            assert feats.shape == (4, 48)
            assert model(inputs).shape == (4, 3)
            for k, m in enumerate(mods):
                block = feats[:, 16 * k : 16 * (k + 1)]
                if m in subset:
                    assert torch.allclose(block, model.encoders[m](full[m]))
                else:
                    assert torch.equal(block, torch.zeros_like(block))


def test_fusion_input_errors() -> None:
    model = FusionModel(["acc", "gyro"], embed_dim=16, num_classes=3)
    with pytest.raises(UnknownModalityError):
        model({"skeleton": windows("skeleton", 2)})
    with pytest.raises(UnknownModalityError):
        model({"lidar": torch.zeros(2, 5, 5)})
    with pytest.raises(ShapeError):
        model({})
    with pytest.raises(ShapeError, match="batch"):
        model({"acc": windows("acc", 2), "gyro": windows("gyro", 3)})
    with pytest.raises(ShapeError):
        model({"acc": windows("gyro", 2)[:, :50]})
    with pytest.raises(ConfigError):
        FusionModel(["acc"])({"acc": windows("acc", 2)})
    with pytest.raises(ConfigError):
        FusionModel("acc")
    with pytest.raises(UnknownModalityError):
        FusionModel([])


def test_embed_is_unit_norm() -> None:
    model = FusionModel(["gyro", "skeleton"], embed_dim=16, proj_dim=8)
    z = model.embed("skeleton", windows("skeleton", 6))
    assert z.shape == (6, 8)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(6))
    with pytest.raises(UnknownModalityError):
        model.embed("acc", windows("acc", 2))


def test_modality_state_round_trip() -> None:
    # Prepare
    torch.manual_seed(0)
    a = FusionModel(["acc", "gyro"], embed_dim=16, proj_dim=8, num_classes=3)
    torch.manual_seed(1)
    b = FusionModel(["acc", "skeleton"], embed_dim=16, proj_dim=8)
    x = windows("acc", 3)
    # Execute
    state = a.modality_state("acc")
    b.load_modality_state("acc", state)
    # Assert
    assert state and all(k.startswith(("encoders.acc.", "heads.acc.")) for k in state)
    for k, v in b.modality_state("acc").items():
        assert torch.equal(v, state[k])
    torch.testing.assert_close(a.eval().embed("acc", x), b.eval().embed("acc", x))
    state["heads.acc.0.weight"].add_(1.0)  # a copy: the model is untouched
    assert not torch.equal(a.state_dict()["heads.acc.0.weight"], state["heads.acc.0.weight"])
    with pytest.raises(ShapeError, match="missing"):
        b.load_modality_state("acc", {k: v for k, v in state.items() if "heads" not in k})
    wrong = dict(state)
    wrong["heads.acc.0.weight"] = torch.zeros(2, 2)
    with pytest.raises(ShapeError, match="shape"):
        b.load_modality_state("acc", wrong)
    with pytest.raises(UnknownModalityError):
        b.modality_state("gyro")


def test_autoencoder_encoder_state_loads_into_fusion() -> None:
    ae = Autoencoder(SensorEncoder("acc", embed_dim=16))
    model = FusionModel(["acc"], embed_dim=16)
    model.encoders["acc"].load_state_dict(ae.encoder.state_dict())
    x = windows("acc", 2)
    torch.testing.assert_close(model.encoders["acc"].eval()(x), ae.encoder.eval()(x))


@pytest.mark.parametrize(("modality", "arch"), list(itertools.product(MODALITIES, ARCHITECTURES)))
def test_every_registered_encoder_embeds_every_modality(modality: str, arch: str) -> None:
    # Prepare
    torch.manual_seed(0)
    enc = build_encoder(modality, EncoderSpec(arch, embed_dim=24, dropout=0.2))
    x = windows(modality, 4)

    # Execute
    enc.train()
    out = enc(x)
    out.sum().backward()
    enc.eval()
    a, b = enc(x), enc(x)

    # Assert: shapes, gradients everywhere, deterministic in eval mode (dropout off)
    assert (enc.modality, enc.embed_dim) == (modality, 24)
    assert out.shape == (4, 24) and bool(torch.isfinite(out).all())
    assert all(p.grad is not None for p in enc.parameters())
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a[0], a[1])


def test_paper_encoder_matches_the_papers_feature_sizes() -> None:
    # The paper's IMU network: 16 maps of 119 x 2 = 238 values into a GRU(238, 120, 2 layers);
    # skeleton: 16 maps of 28 x 8 x 2 = 448 values; both give 16 x 120 = 1920 features.
    imu = PaperEncoder("acc", 1920)
    skeleton = PaperEncoder("skeleton", 1920)
    assert (imu.gru.input_size, imu.gru.hidden_size, imu.gru.num_layers) == (238, 120, 2)
    assert skeleton.gru.input_size == 448
    assert isinstance(imu.out, torch.nn.Identity)
    imu.eval()
    assert imu(windows("acc", 3)).shape == (3, 1920)
    dropouts = [m for m in skeleton.modules() if isinstance(m, torch.nn.Dropout)]
    assert len(dropouts) == 4 and all(d.p == 0.5 for d in dropouts)


def test_temporal_conv_encoder_sees_the_order_of_events() -> None:
    # A window and its time reversal: mean + max pooling of features is blind to the order of
    # events far apart; the flattened time axis is not.
    torch.manual_seed(0)
    x = torch.zeros(1, 120, 3)
    x[0, 10:20, 0] = 1.0
    x[0, 90:100, 1] = 1.0
    rev = x.flip(1).roll(0, 1)
    enc = build_encoder("acc", EncoderSpec("tconv", 16))
    enc.eval()
    assert not torch.allclose(enc(x), enc(rev), atol=1e-4)


def test_encoder_spec_is_validated() -> None:
    with pytest.raises(ConfigError, match="valid encoders are: conv, tconv, gru, paper"):
        EncoderSpec("transformer")
    with pytest.raises(ConfigError, match="dropout"):
        EncoderSpec("conv", dropout=1.0)
    with pytest.raises(ConfigError, match="norm"):
        EncoderSpec("paper", norm="layer")


def test_fusion_model_builds_its_encoders_from_the_spec() -> None:
    model = FusionModel(["gyro", "skeleton"], 32, 16, 5, encoder=EncoderSpec("tconv", 999, 0.1))
    assert model.encoder_spec == EncoderSpec("tconv", 32, 0.1)
    assert all(getattr(e, "arch", None) == "tconv" for e in model.encoders.values())
    assert model({"gyro": windows("gyro", 2)}).shape == (2, 5)
