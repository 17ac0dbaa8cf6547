"""The mapping files the table-import tests write: one long table, two modalities."""

from __future__ import annotations

SLIDING = 'mode = "sliding"\nlength_s = 1.0\nstride_s = 0.5'
WHOLE = 'mode = "whole"'


def table_mapping(
    windowing: str = SLIDING,
    *,
    name: str = "wrist-lab",
    acc: tuple[str, list[str], int] = ("wrist_acc", ["ax", "ay", "az"], 10),
    ecg_window: int = 5,
) -> str:
    """A mapping of a 10 Hz table (subject, session, activity) onto an IMU and an ECG.

    ``acc`` is the IMU modality's name, columns and window; ``windowing`` the body of the
    ``[windowing]`` table.
    """
    modality, columns, window = acc
    listed = ", ".join(f'"{c}"' for c in columns)
    return f"""
name = "{name}"
classes = ["sit", "walk"]

[table]
subject = "subject"
label = "activity"
trial = "session"
rate_hz = 10.0

[windowing]
{windowing}

[modalities.{modality}]
columns = [{listed}]
unit = "g"
window = {window}

[modalities.ecg]
columns = ["ecg"]
unit = "mV"
window = {ecg_window}
"""
