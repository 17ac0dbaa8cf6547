"""The modality registry: what each sensing modality looks like once windowed.

Every window is a float32 array of shape ``(window, channels)``: time first, then
channels. The skeleton's 20 joints x 3 coordinates are flattened joint-major
(``channel = 3 * joint + axis``), so all modalities share one layout.

A modality's geometry says how its channels relate: ``points`` sensing points (one for an
IMU, 20 joints for a skeleton) of ``channels // points`` axes each, point-major. Normalisation
schemes use it (:func:`normalization_groups`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

from mmbind.errors import UnknownModalityError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Modality:
    """A sensing modality after resampling to a fixed window.

    Attributes
    ----------
    name : str
        Registry key, e.g. ``"acc"``.
    channels : int
        Channels per time step (skeleton: 20 joints x 3 = 60).
    rate_hz : float
        Native sampling rate of the sensor.
    window : int
        Time steps per window after resampling (the paper: 120 IMU samples,
        40 skeleton frames, Ouyang et al. 2025, Sec. 5.1).
    unit : str
        Physical unit of the raw values.
    points : int
        Sensing points, each contributing ``channels // points`` axes, point-major
        (``channel = axes * point + axis``): 1 for a vector sensor such as an IMU's
        accelerometer, 20 joints for the skeleton.
    """

    name: str
    channels: int
    rate_hz: float
    window: int
    unit: str
    points: int = 1

    def __post_init__(self) -> None:
        if self.channels < 1 or self.window < 1 or not self.rate_hz > 0:
            raise UnknownModalityError(
                f"modality {self.name!r}: channels ({self.channels}) and window "
                f"({self.window}) must be >= 1 and rate_hz ({self.rate_hz}) > 0"
            )
        if self.points < 1 or self.channels % self.points:
            raise UnknownModalityError(
                f"modality {self.name!r}: {self.channels} channels cannot be split into "
                f"{self.points} points of equal size"
            )

    @property
    def axes(self) -> int:
        """Axes per sensing point (3 for an IMU and for skeleton joints)."""
        return self.channels // self.points

    @property
    def shape(self) -> tuple[int, int]:
        """Shape of one window: ``(window, channels)``."""
        return (self.window, self.channels)


SKELETON_JOINTS = 20

#: The modalities of the built-in data sets (synthetic, UTD-MHAD), in registry order.
BUILTIN_MODALITIES: tuple[Modality, ...] = (
    Modality("acc", 3, 50.0, 120, "g"),
    Modality("gyro", 3, 50.0, 120, "deg/s"),
    Modality("mag", 3, 50.0, 120, "uT"),
    Modality("skeleton", SKELETON_JOINTS * 3, 30.0, 40, "m", points=SKELETON_JOINTS),
)

#: The process's registry: the built-ins, overlaid by the active data set's own modalities
#: (:func:`use_modalities`). One dict, changed in place, so every importer sees the same one.
REGISTRY: dict[str, Modality] = {m.name: m for m in BUILTIN_MODALITIES}

_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


def check_modality_name(name: str) -> str:
    """``name`` if it can name a modality: lower-case letters, digits and ``_``, a letter first.

    Raises
    ------
    UnknownModalityError
        Any other name (the message says what is allowed).
    """
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise UnknownModalityError(
            f"modality name {name!r} is not allowed; use 1-32 lower-case letters, digits or "
            "'_', starting with a letter (e.g. 'ecg', 'thigh_acc')"
        )
    return name


def use_modalities(modalities: Iterable[Modality]) -> None:
    """Make ``modalities`` (a data set's own) the registry's, on top of the built-ins.

    The registry becomes the built-in modalities, in their order, with any of the same name
    replaced by the data set's definition, followed by the data set's other modalities in
    the order given. ``use_modalities(())`` restores the built-ins. A data set is active per
    process (a run reads one data set); building a :class:`~mmbind.run_config.RunConfig`
    activates its data set's modalities.

    Raises
    ------
    UnknownModalityError
        A name is not allowed (:func:`check_modality_name`) or given twice.
    """
    own: dict[str, Modality] = {}
    for modality in modalities:
        check_modality_name(modality.name)
        if modality.name in own:
            raise UnknownModalityError(f"modality {modality.name!r} is defined twice")
        own[modality.name] = modality
    merged = {m.name: own.pop(m.name, m) for m in BUILTIN_MODALITIES}
    merged.update(own)
    if merged != REGISTRY:
        log.debug("modality registry: %s", ", ".join(merged))
    REGISTRY.clear()
    REGISTRY.update(merged)


def get_modality(name: str) -> Modality:
    """Look a modality up by name.

    Raises
    ------
    UnknownModalityError
        If ``name`` is not registered; the message lists the valid names.
    """
    try:
        return REGISTRY[name]
    except KeyError:
        valid = ", ".join(sorted(REGISTRY))
        raise UnknownModalityError(
            f"unknown modality {name!r}; valid modalities are: {valid}"
        ) from None


NORMALIZATIONS: tuple[str, ...] = ("channel", "axis", "modality")
"""Normalisation schemes: which channels share one mean and standard deviation."""


def normalization_groups(modality: Modality, scheme: str) -> list[list[int]]:
    """The channel groups that share one mean and std under a normalisation ``scheme``.

    * ``"channel"``: every channel on its own;
    * ``"axis"``: by the modality's geometry, as the MMBind paper's code normalises UTD-MHAD
      (Ouyang et al., SenSys 2025, nesl/multimodal-bind ``data_pre.py``): the axes of a
      one-point sensor share one scale (acc x, y and z together, so the direction of gravity
      survives), and each axis of a multi-point sensor is pooled over its points (skeleton x
      over the 20 joints, then y, then z, so the body's shape survives);
    * ``"modality"``: all channels of the modality together.

    Raises
    ------
    ConfigError
        ``scheme`` is not one of :data:`NORMALIZATIONS`.
    """
    from mmbind.errors import ConfigError

    c = modality.channels
    if scheme == "channel":
        return [[i] for i in range(c)]
    if scheme == "modality" or (scheme == "axis" and modality.points == 1):
        return [list(range(c))]
    if scheme == "axis":
        a = modality.axes
        return [list(range(axis, c, a)) for axis in range(a)]
    raise ConfigError(
        f"unknown normalization {scheme!r}; valid schemes are: {', '.join(NORMALIZATIONS)}"
    )


def parse_modalities(spec: str | Iterable[str]) -> tuple[str, ...]:
    """Parse ``"acc,gyro"`` (or an iterable of names) into validated, de-duplicated names.

    The order of first appearance is kept.

    Raises
    ------
    UnknownModalityError
        On an unknown or empty name, or when no modality is given.
    """
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for raw in names:
        name = raw.strip().lower()
        if not name:
            raise UnknownModalityError(
                f"empty modality name in {spec!r}; give a comma-separated list such as 'acc,gyro'"
            )
        get_modality(name)
        if name not in out:
            out.append(name)
    if not out:
        raise UnknownModalityError("no modality given; give at least one, e.g. 'acc,gyro'")
    return tuple(out)
