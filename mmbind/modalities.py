"""The modality registry: what each sensing modality looks like once windowed.

Every window is a float32 array of shape ``(window, channels)``: time first, then
channels. The skeleton's 20 joints x 3 coordinates are flattened joint-major
(``channel = 3 * joint + axis``), so all modalities share one layout.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mmbind.errors import UnknownModalityError


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
    """

    name: str
    channels: int
    rate_hz: float
    window: int
    unit: str

    @property
    def shape(self) -> tuple[int, int]:
        """Shape of one window: ``(window, channels)``."""
        return (self.window, self.channels)


SKELETON_JOINTS = 20

REGISTRY: dict[str, Modality] = {
    m.name: m
    for m in (
        Modality("acc", 3, 50.0, 120, "g"),
        Modality("gyro", 3, 50.0, 120, "deg/s"),
        Modality("mag", 3, 50.0, 120, "uT"),
        Modality("skeleton", SKELETON_JOINTS * 3, 30.0, 40, "m"),
    )
}


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
