"""Plain torch training loops of MMBind's local steps: pretraining, alignment, fine-tuning.

Each loop is deterministic given its ``seed`` (a dedicated ``torch.Generator`` shuffles the
batches; the model's initial weights are the caller's business), prints nothing, leaves
``torch.set_num_threads`` to the caller and returns the mean loss of its last epoch
(sample-weighted over the batches). The steps follow Ouyang et al., "MMBind", SenSys 2025:
autoencoder pretraining of the unimodal encoders (Sec. 4.1), weighted contrastive alignment of
pseudo-complete tuples (Sec. 4.3) and supervised fine-tuning on the few labelled, naturally
paired samples (Sec. 4.4).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import Tensor, nn

from mmbind.binding.autoencoder import Autoencoder
from mmbind.binding.fusion import FusionModel
from mmbind.binding.weighted_contrastive import WeightedMultiViewContrastiveLoss
from mmbind.errors import ConfigError, DataError, ShapeError

__all__ = [
    "align",
    "augment_windows",
    "classification_metrics",
    "embed_all",
    "finetune",
    "predict",
    "pretrain_autoencoder",
    "warp_windows",
]


def _check_hparams(epochs: int, batch_size: int, lr: float) -> None:
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer; got {value!r}")
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not math.isfinite(lr) or lr <= 0:
        raise ConfigError(f"lr must be a finite number > 0; got {lr!r}")


def _common_length(tensors: Mapping[str, Tensor], what: str) -> int:
    sizes = {k: int(v.shape[0]) if v.ndim else -1 for k, v in tensors.items()}
    if len(set(sizes.values())) > 1:
        raise ShapeError(f"{what} must all have the same number of samples; got {sizes}")
    return next(iter(sizes.values()))


def _batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
    order = torch.randperm(n, generator=generator)
    yield from torch.split(order, batch_size)


def augment_windows(x: Tensor, strength: float, generator: torch.Generator) -> Tensor:
    """Random per-sample, per-channel scaling and additive jitter of standardised windows.

    ``x * (1 + 0.2 s e1) + 0.1 s e2`` with ``e1 ~ N(0, 1)`` per (sample, channel) and
    ``e2 ~ N(0, 1)`` per element, ``s = strength``; ``strength == 0`` returns ``x`` itself.

    Parameters
    ----------
    x : Tensor, shape (B, T, C)
    strength : float, >= 0
    generator : torch.Generator
    """
    if strength <= 0:
        return x
    b, _, c = x.shape
    scale = 1.0 + 0.2 * strength * torch.randn(b, 1, c, generator=generator)
    noise = 0.1 * strength * torch.randn(x.shape, generator=generator)
    return x * scale + noise


def warp_windows(x: Tensor, strength: float, generator: torch.Generator) -> Tensor:
    """Random per-sample time warp: a stretch and a shift of the time axis, resampled linearly.

    Subjects perform an action at their own pace; sample ``i`` is read at times
    ``c + (t - c) * f_i + d_i`` (clamped to the window) with ``c`` the window centre, speed
    ``f_i ~ U(1 - 0.2 s, 1 + 0.2 s)`` and shift ``d_i ~ U(-0.1 s T, 0.1 s T)``, ``s =
    strength``; ``strength == 0`` returns ``x`` itself (and draws no random numbers).

    Parameters
    ----------
    x : Tensor, shape (B, T, C)
    strength : float, >= 0
    generator : torch.Generator

    Returns
    -------
    Tensor, shape (B, T, C)
    """
    if strength <= 0:
        return x
    b, t, c = x.shape
    speed = 1.0 + 0.2 * strength * (2 * torch.rand(b, 1, generator=generator) - 1)
    shift = 0.1 * strength * t * (2 * torch.rand(b, 1, generator=generator) - 1)
    centre = (t - 1) / 2
    pos = (centre + (torch.arange(t, dtype=x.dtype) - centre) * speed + shift).clamp(0, t - 1)
    lo = pos.floor().long().clamp(max=t - 2) if t > 1 else pos.floor().long()
    hi = (lo + 1).clamp(max=t - 1)
    frac = (pos - lo.to(x.dtype)).unsqueeze(2)  # (B, T, 1)
    gather_lo = torch.gather(x, 1, lo.unsqueeze(2).expand(b, t, c))
    gather_hi = torch.gather(x, 1, hi.unsqueeze(2).expand(b, t, c))
    return gather_lo * (1 - frac) + gather_hi * frac


def _augment(x: Tensor, augment: float, warp: float, gen: torch.Generator) -> Tensor:
    return warp_windows(augment_windows(x, augment, gen), warp, gen)


def pretrain_autoencoder(
    ae: Autoencoder,
    windows: Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    weight_decay: float = 0.0,
) -> float:
    """Train an autoencoder on unlabelled windows with MSE reconstruction (Adam).

    Parameters
    ----------
    ae : Autoencoder
    windows : Tensor, shape (N, T, C), N >= 1
    epochs, batch_size : int
    lr : float
    seed : int
        Seeds the batch order.
    weight_decay : float
        Adam's L2 penalty.

    Returns
    -------
    float
        Mean reconstruction loss of the last epoch.

    Raises
    ------
    ConfigError
        On bad hyperparameters.
    ShapeError, DataError
        On windows of the wrong shape, an empty set or non-finite values.
    """
    _check_hparams(epochs, batch_size, lr)
    if windows.ndim != 3 or windows.shape[0] == 0:
        raise ShapeError(
            f"windows must be a non-empty (N, T, C) tensor; got {tuple(windows.shape)}"
        )
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(ae.parameters(), lr=lr, weight_decay=weight_decay)
    ae.train()
    last = 0.0
    for _ in range(epochs):
        total = 0.0
        for idx in _batches(windows.shape[0], batch_size, gen):
            loss = ae.reconstruction_loss(windows[idx])
            opt.zero_grad(set_to_none=True)
            torch.autograd.backward(loss)
            opt.step()
            total += float(loss.detach()) * idx.numel()
        last = total / windows.shape[0]
    return last


def align(
    model: FusionModel,
    own: Mapping[str, Tensor],
    partner: Mapping[str, Tensor],
    weights: Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    temperature: float,
    seed: int,
    partner_present: Mapping[str, Tensor] | None = None,
    own_present: Mapping[str, Tensor] | None = None,
    weight_decay: float = 0.01,
    augment: float = 0.0,
    partner_grads: dict[str, Tensor] | None = None,
    injected: Mapping[str, tuple[Tensor, Tensor]] | None = None,
    injected_scale: float = 1.0,
    warp: float = 0.0,
    self_views: bool = False,
) -> float:
    """Weighted contrastive alignment of pseudo-complete tuples (AdamW).

    The views are ``model.modalities`` in order. View ``v`` of sample ``n`` is

    1. ``model.embed(v, own[v][n])`` when ``v`` is an own modality and
       ``own_present[v][n]`` is True (always, when ``own_present`` does not name ``v``): own
       data wins over a partner embedding of the same modality;
    2. else the fixed partner embedding ``partner[v][n]`` (no gradient flows into it) when
       ``v`` is in ``partner`` and ``partner_present[v][n]`` is True (always, when
       ``partner_present`` does not name ``v``);
    3. else it is missing and masked out of the loss.

    Only the encoders and heads of the own modalities get gradients, and only through the rows
    they encode: a batch encodes only its present rows of each own modality, and augmentation
    touches only those. ``own_present`` lets one call train on samples holding different
    modality sets (e.g. several nodes' data pooled, zeros standing in for the windows a node
    lacks); without it every sample holds every own modality, and the computation is exactly
    that of a call where ``own_present`` marks every row present.

    Parameters
    ----------
    model : FusionModel
    own : mapping of modality to Tensor (N, T, C)
        Raw windows; at least one modality. Rows marked absent by ``own_present`` may hold
        any value, NaN included: they are never encoded.
    partner : mapping of modality to Tensor (N, proj_dim)
        Fixed embeddings (e.g. bound partner samples' ``embed`` outputs). For an own modality
        they are used only on the rows where the own window is absent.
    weights : Tensor, shape (N,)
        Binding weight of each tuple (1 for natural tuples); finite and >= 0.
    epochs, batch_size : int
    lr, temperature : float
    seed : int
    partner_present : mapping of modality to BoolTensor (N,), optional
        Which rows of ``partner[v]`` exist (e.g. samples a binding left out); the rows marked
        False are masked and may hold any value, NaN included. Default: all rows exist.
    own_present : mapping of modality to BoolTensor (N,), optional
        Which rows of ``own[v]`` hold a real window; keys must be own modalities. Default:
        all rows of every own modality.
    weight_decay : float
        AdamW's decoupled weight decay.
    augment : float
        Strength of :func:`augment_windows` applied to the encoded own windows of every batch.
    partner_grads : dict, optional
        When given, filled with the gradient of the loss with respect to each partner
        embedding, averaged over the optimiser steps: ``partner_grads[v]`` is a Tensor
        ``(N, proj_dim)``, zero on rows without a (used) partner view. This is what the
        partner needs to train its own encoder on this node's loss (split-learning style:
        gradients of embeddings travel back, never windows).
    injected : mapping of modality to (rows (R,) int64, grad (R, proj_dim)), optional
        Gradients other nodes' losses sent back for this node's embeddings of its own
        modality ``v`` (their ``partner_grads``, routed by the coordinator): every optimiser
        step also descends ``injected_scale * sum_r embed(v, own[v][r]) . grad[r]``,
        estimated on a seeded sample of ``batch_size`` of the rows (scaled by
        ``R / batch_size``, so unbiased), so that this node's encoder follows the other
        nodes' per-step loss as well as its own.
    injected_scale : float
        Weight of the injected term, finite and >= 0.
    warp : float
        Strength of :func:`warp_windows` applied after :func:`augment_windows`.
    self_views : bool
        Add a second, independently augmented view of every own window to its tuple (a
        SimCLR-style positive within the modality, Chen et al., ICML 2020); useful only with
        ``augment`` or ``warp`` > 0.

    Returns
    -------
    float
        Mean weighted contrastive loss of the last epoch (without the injected term).

    Raises
    ------
    ConfigError
        On bad hyperparameters, no own modality, or a modality the model does not have.
    ShapeError
        On inconsistent sample counts or embedding sizes, or a ``partner_present`` /
        ``own_present`` entry that is not a bool tensor of shape ``(N,)`` or names a modality
        without partner embeddings / own windows.
    DataError
        On non-finite partner embeddings (present rows), weights or present own windows.
    """
    _check_hparams(epochs, batch_size, lr)
    loss_fn = WeightedMultiViewContrastiveLoss(temperature)
    if not own:
        raise ConfigError("align needs at least one own modality to train")
    for m in list(own) + list(partner):
        model.check_modality(m)
    n = _common_length(
        {
            **{f"own[{k}]": v for k, v in own.items()},
            **{f"partner[{k}]": v for k, v in partner.items()},
            "weights": weights,
        },
        "own windows, partner embeddings and weights",
    )
    if weights.ndim != 1:
        raise ShapeError(f"weights must have shape (N,); got {tuple(weights.shape)}")
    masks = dict(partner_present or {})
    for m in masks:
        if m not in partner:
            raise ShapeError(f"partner_present names {m!r}, which has no partner embeddings")
    own_rows = _own_rows(own_present, own, n)
    fixed: dict[str, Tensor] = {}  # raw partner embeddings (leaves when gradients are asked)
    fixed_rows: dict[str, Tensor] = {}
    for m, z in partner.items():
        if z.ndim != 2 or z.shape[1] != model.proj_dim:
            raise ShapeError(
                f"partner[{m!r}] must have shape (N, {model.proj_dim}); got {tuple(z.shape)}"
            )
        rows = masks.get(m, torch.ones(n, dtype=torch.bool))
        if rows.dtype != torch.bool or tuple(rows.shape) != (n,):
            raise ShapeError(
                f"partner_present[{m!r}] must be a bool tensor of shape ({n},); "
                f"got {rows.dtype} {tuple(rows.shape)}"
            )
        z = z.detach().float()
        if not bool(torch.isfinite(z[rows]).all()):
            raise DataError(f"partner[{m!r}] holds NaN or infinite values")
        if m not in own or m in own_rows:
            # For an own modality: only the rows whose own window is absent fall back on it.
            used = rows & ~own_rows[m] if m in own_rows else rows
            raw = torch.where(used.unsqueeze(1), z, torch.zeros_like(z))
            fixed[m] = raw.requires_grad_(True) if partner_grads is not None else raw
            fixed_rows[m] = used
    if n == 0:
        raise ShapeError("align needs at least one sample")
    w_all = weights.detach().float()
    inject = _check_injected(injected, own, model.proj_dim, injected_scale)

    gen = torch.Generator().manual_seed(seed)
    modules = [mod for m in own for mod in (model.encoders[m], model.heads[m])]
    params = [p for mod in modules for p in mod.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    model.train()
    last = 0.0
    steps = 0
    for _ in range(epochs):
        total = 0.0
        for idx in _batches(n, batch_size, gen):
            b = idx.numel()
            views: list[Tensor] = []
            present = torch.zeros(b, len(model.modalities), dtype=torch.bool)
            encoded_any = False
            for v, m in enumerate(model.modalities):
                rows_b = own_rows[m][idx] if m in own_rows else None
                if m in own and (rows_b is None or bool(rows_b.all())):
                    # Every row of the batch holds the window: the plain path.
                    views.append(model.embed(m, _augment(own[m][idx], augment, warp, gen)))
                    present[:, v] = True
                    encoded_any = True
                    continue
                if m in fixed:
                    view, has = F.normalize(fixed[m][idx], dim=-1), fixed_rows[m][idx]
                else:
                    view = torch.zeros(b, model.proj_dim)
                    has = torch.zeros(b, dtype=torch.bool)
                if rows_b is not None and bool(rows_b.any()):
                    pos = rows_b.nonzero().squeeze(1)  # (k,) batch positions with a window
                    z = model.embed(m, _augment(own[m][idx[pos]], augment, warp, gen))
                    encoded = torch.zeros(b, model.proj_dim, dtype=z.dtype).index_put((pos,), z)
                    view = torch.where(rows_b.unsqueeze(1), encoded, view)
                    has = has | rows_b
                    encoded_any = True
                views.append(view)
                present[:, v] = has
            if self_views:
                # A second augmented view of every own window: a positive of its own tuple.
                extra = []
                for m in own:
                    rows_b = own_rows[m][idx] if m in own_rows else torch.ones(b, dtype=torch.bool)
                    if not bool(rows_b.any()):
                        continue
                    pos = rows_b.nonzero().squeeze(1)
                    z = model.embed(m, _augment(own[m][idx[pos]], augment, warp, gen))
                    views.append(torch.zeros(b, model.proj_dim, dtype=z.dtype).index_put((pos,), z))
                    extra.append(rows_b)
                present = (
                    torch.cat([present, torch.stack(extra, dim=1)], dim=1) if extra else present
                )
            loss: Tensor = loss_fn(torch.stack(views, dim=1), present, w_all[idx])
            objective = loss + _injected_term(model, own, inject, batch_size, gen, augment, warp)
            if encoded_any or inject:  # a batch without any own window has nothing to train
                opt.zero_grad(set_to_none=True)
                torch.autograd.backward(objective)
                opt.step()
                steps += 1
            total += float(loss.detach()) * b
        last = total / n
    if partner_grads is not None:
        for m, z in fixed.items():
            g = z.grad if z.grad is not None else torch.zeros_like(z)
            partner_grads[m] = (g / max(steps, 1)).detach()
    return last


def _check_injected(
    injected: Mapping[str, tuple[Tensor, Tensor]] | None,
    own: Mapping[str, Tensor],
    proj_dim: int,
    scale: float,
) -> dict[str, tuple[Tensor, Tensor, float]]:
    """The checked injected gradients: ``{modality: (rows, grad, scale)}``."""
    if not injected:
        return {}
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not math.isfinite(scale):
        raise ConfigError(f"injected_scale must be a finite number >= 0; got {scale!r}")
    if scale < 0:
        raise ConfigError(f"injected_scale must be >= 0; got {scale!r}")
    out: dict[str, tuple[Tensor, Tensor, float]] = {}
    for m, (rows, grad) in injected.items():
        if m not in own:
            raise ShapeError(f"injected gradients name {m!r}, which has no own windows")
        n = int(own[m].shape[0])
        if (
            rows.ndim != 1
            or rows.dtype != torch.int64
            or tuple(grad.shape) != (rows.numel(), proj_dim)
        ):
            raise ShapeError(
                f"injected[{m!r}] must be rows (R,) int64 and grad (R, {proj_dim}); got "
                f"{rows.dtype} {tuple(rows.shape)} and {tuple(grad.shape)}"
            )
        if rows.numel() and (int(rows.min()) < 0 or int(rows.max()) >= n):
            raise ShapeError(f"injected[{m!r}] rows must lie in [0, {n}); got {rows.tolist()[:5]}")
        if not bool(torch.isfinite(grad).all()):
            raise DataError(f"injected[{m!r}] gradient holds NaN or infinite values")
        if rows.numel() and scale > 0:
            out[m] = (rows, grad.detach().float(), float(scale))
    return out


def _injected_term(
    model: FusionModel,
    own: Mapping[str, Tensor],
    inject: Mapping[str, tuple[Tensor, Tensor, float]],
    batch_size: int,
    gen: torch.Generator,
    augment: float,
    warp: float,
) -> Tensor | float:
    """``sum_m scale * R_m / k * sum_{sampled r} embed(m, x_r) . grad_r`` for one step."""
    term: Tensor | float = 0.0
    for m, (rows, grad, scale) in inject.items():
        r = rows.numel()
        k = min(batch_size, r)
        pick = torch.randperm(r, generator=gen)[:k]
        z = model.embed(m, _augment(own[m][rows[pick]], augment, warp, gen))
        term = term + (scale * r / k) * (z * grad[pick]).sum()
    return term


def _own_rows(
    own_present: Mapping[str, Tensor] | None, own: Mapping[str, Tensor], n: int
) -> dict[str, Tensor]:
    """The checked ``own_present`` masks, BoolTensor (n,) per own modality it names."""
    out: dict[str, Tensor] = {}
    for m, rows in (own_present or {}).items():
        if m not in own:
            raise ShapeError(f"own_present names {m!r}, which has no own windows")
        if not isinstance(rows, Tensor) or rows.dtype != torch.bool or tuple(rows.shape) != (n,):
            got = (
                f"{rows.dtype} {tuple(rows.shape)}"
                if isinstance(rows, Tensor)
                else type(rows).__name__
            )
            raise ShapeError(f"own_present[{m!r}] must be a bool tensor of shape ({n},); got {got}")
        out[m] = rows
    return out


def finetune(
    model: FusionModel,
    inputs: Mapping[str, Tensor],
    labels: Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    freeze_encoders: bool = False,
    weight_decay: float = 0.01,
    augment: float = 0.0,
    encoder_lr_scale: float = 1.0,
    warp: float = 0.0,
    schedule: str = "constant",
    average_last: int = 0,
) -> float:
    """Supervised fine-tuning with cross-entropy (AdamW).

    Parameters
    ----------
    model : FusionModel
        Built with ``num_classes``.
    inputs : mapping of modality to Tensor (N, T, C)
        Any non-empty subset of the model's modalities; the others are zero-filled features.
    labels : Tensor, shape (N,), integer in ``[0, num_classes)``
    epochs, batch_size : int
    lr : float
    seed : int
    freeze_encoders : bool
        Train only the classifier (linear-probe style); encoder features are then computed
        without gradients.
    weight_decay : float
        AdamW's decoupled weight decay.
    augment : float
        Strength of :func:`augment_windows` applied to every batch.
    encoder_lr_scale : float
        The encoders' learning rate is ``lr * encoder_lr_scale`` (the classifier's is ``lr``).
    warp : float
        Strength of :func:`warp_windows` applied after :func:`augment_windows`.
    schedule : {"constant", "cosine"}
        Learning rate over the steps: constant, or cosine-annealed from ``lr`` to 0 (SGDR
        without restarts, Loshchilov & Hutter, ICLR 2017).
    average_last : int
        ``K > 0``: the model ends with the mean of its weights at the end of each of the last
        ``K`` epochs (stochastic weight averaging, Izmailov et al., UAI 2018), batch-norm
        statistics recomputed on the inputs; ``0``: the last epoch's weights.

    Returns
    -------
    float
        Mean cross-entropy of the last epoch.

    Raises
    ------
    ConfigError
        On bad hyperparameters or a model without classifier.
    ShapeError
        On inconsistent sample counts or labels outside ``[0, num_classes)``.
    """
    _check_hparams(epochs, batch_size, lr)
    if schedule not in SCHEDULES:
        raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}; got {schedule!r}")
    if isinstance(average_last, bool) or not isinstance(average_last, int) or average_last < 0:
        raise ConfigError(f"average_last must be an integer >= 0; got {average_last!r}")
    if average_last > epochs:
        raise ConfigError(f"average_last ({average_last}) cannot exceed epochs ({epochs})")
    if model.classifier is None or model.num_classes is None:
        raise ConfigError("finetune needs a model built with num_classes")
    if not inputs:
        raise ShapeError("finetune needs at least one input modality")
    for m in inputs:
        model.check_modality(m)
    n = _common_length({**inputs, "labels": labels}, "inputs and labels")
    _check_labels(labels, model.num_classes)
    if n == 0:
        raise ShapeError("finetune needs at least one sample")
    y_all = labels.long()
    gen = torch.Generator().manual_seed(seed)
    groups: list[dict[str, object]] = [{"params": list(model.classifier.parameters()), "lr": lr}]
    if not freeze_encoders:
        enc = [p for m in inputs for p in model.encoders[m].parameters()]
        groups.append({"params": enc, "lr": lr * encoder_lr_scale})
    opt = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    base_lrs = [float(g["lr"]) for g in opt.param_groups]
    steps = epochs * math.ceil(n / batch_size)
    step = 0
    trained = [p for g in groups for p in g["params"]]  # type: ignore[attr-defined]
    averaged: list[Tensor] = []
    model.train()
    last = 0.0
    for epoch in range(epochs):
        total = 0.0
        for idx in _batches(n, batch_size, gen):
            if schedule == "cosine":
                factor = 0.5 * (1.0 + math.cos(math.pi * step / steps))
                for g, base in zip(opt.param_groups, base_lrs, strict=True):
                    g["lr"] = base * factor
            step += 1
            batch = {m: _augment(x[idx], augment, warp, gen) for m, x in inputs.items()}
            if freeze_encoders:
                with torch.no_grad():
                    feats = model.features(batch)
            else:
                feats = model.features(batch)
            loss = F.cross_entropy(model.classify(feats), y_all[idx])
            opt.zero_grad(set_to_none=True)
            torch.autograd.backward(loss)
            opt.step()
            total += float(loss.detach()) * idx.numel()
        last = total / n
        k = epoch - (epochs - average_last) + 1  # 1..K over the last K epochs
        if k >= 1:
            with torch.no_grad():
                if not averaged:
                    averaged = [p.detach().clone() for p in trained]
                else:
                    for avg, p in zip(averaged, trained, strict=True):
                        avg.add_(p.detach() - avg, alpha=1.0 / k)
    if averaged:
        with torch.no_grad():
            for avg, p in zip(averaged, trained, strict=True):
                p.copy_(avg)
        _recompute_batch_norm(model, inputs, batch_size)
    return last


SCHEDULES: tuple[str, ...] = ("constant", "cosine")
"""Learning-rate schedules :func:`finetune` knows."""


def _recompute_batch_norm(
    model: FusionModel, inputs: Mapping[str, Tensor], batch_size: int
) -> None:
    """Running statistics of every batch-norm layer, recomputed on ``inputs`` (after SWA)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative mean over the batches below
    n = _common_length(inputs, "inputs")
    with torch.no_grad():
        for start in range(0, n, batch_size):
            model.features({k: x[start : start + batch_size] for k, x in inputs.items()})
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum


def _check_labels(labels: Tensor, num_classes: int) -> None:
    if labels.ndim != 1 or labels.is_floating_point() or labels.dtype == torch.bool:
        raise ShapeError(
            f"labels must be a 1-D integer tensor; got {labels.dtype} {tuple(labels.shape)}"
        )
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ShapeError(
            f"labels must lie in [0, {num_classes}); got {int(labels.min())}..{int(labels.max())}"
        )


def predict(model: FusionModel, inputs: Mapping[str, Tensor], batch_size: int = 256) -> Tensor:
    """Predicted class of every sample, in eval mode and without gradients.

    Parameters
    ----------
    model : FusionModel
        Built with ``num_classes``.
    inputs : mapping of modality to Tensor (N, T, C)
    batch_size : int

    Returns
    -------
    Tensor, shape (N,), int64
    """
    _check_hparams(1, batch_size, 1.0)
    if not inputs:
        raise ShapeError("predict needs at least one input modality")
    n = _common_length(inputs, "inputs")
    was_training = model.training
    model.eval()
    out: list[Tensor] = []
    try:
        with torch.no_grad():
            for start in range(0, n, batch_size):
                batch = {m: x[start : start + batch_size] for m, x in inputs.items()}
                out.append(model(batch).argmax(dim=1))
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.int64)


def embed_all(
    model_or_encoder_fn: nn.Module | Callable[[Tensor], Tensor], x: Tensor, batch_size: int = 256
) -> NDArray[np.float32]:
    """Run an embedding function over ``x`` in batches, without gradients.

    Parameters
    ----------
    model_or_encoder_fn : nn.Module or callable
        Maps ``(B, T, C)`` to ``(B, d)``: a ``SensorEncoder``, or e.g.
        ``functools.partial(model.embed, "acc")``. A module is put in eval mode for the call
        and restored afterwards.
    x : Tensor, shape (N, T, C)
    batch_size : int

    Returns
    -------
    ndarray, shape (N, d), float32
        ``(0, 0)`` when ``N == 0``.
    """
    _check_hparams(1, batch_size, 1.0)
    module = model_or_encoder_fn if isinstance(model_or_encoder_fn, nn.Module) else None
    was_training = module.training if module is not None else False
    if module is not None:
        module.eval()
    out: list[Tensor] = []
    try:
        with torch.no_grad():
            for start in range(0, int(x.shape[0]), batch_size):
                out.append(model_or_encoder_fn(x[start : start + batch_size]).float())
    finally:
        if module is not None:
            module.train(was_training)
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return torch.cat(out).numpy().astype(np.float32, copy=False)


def classification_metrics(pred: Tensor, target: Tensor, num_classes: int) -> tuple[float, float]:
    """Accuracy and macro-F1 of predicted labels.

    Macro-F1 averages ``F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c)`` over the classes that occur in
    ``target`` or ``pred`` (classes absent from both are not counted).

    Parameters
    ----------
    pred, target : Tensor, shape (N,), integer in ``[0, num_classes)``, N >= 1
    num_classes : int

    Returns
    -------
    (accuracy, macro_f1) : tuple of float

    Raises
    ------
    ShapeError
        On mismatched or empty inputs, or labels out of range.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer; got {num_classes!r}")
    _check_labels(pred, num_classes)
    _check_labels(target, num_classes)
    if pred.shape != target.shape or pred.numel() == 0:
        raise ShapeError(
            f"pred and target must be non-empty and of one shape; got "
            f"{tuple(pred.shape)} and {tuple(target.shape)}"
        )
    p = pred.long().cpu()
    t = target.long().cpu()
    correct = p == t
    tp = torch.bincount(t[correct], minlength=num_classes).double()
    pred_count = torch.bincount(p, minlength=num_classes).double()
    true_count = torch.bincount(t, minlength=num_classes).double()
    fp = pred_count - tp
    fn = true_count - tp
    seen = (pred_count + true_count) > 0
    f1 = 2 * tp[seen] / (2 * tp[seen] + fp[seen] + fn[seen])
    return float(correct.double().mean()), float(f1.mean())
