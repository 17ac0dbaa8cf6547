"""Write a demo CSV of "your own sensors": continuous streams with a label per row.

It stands in for a lab's export: eight subjects wearing a wrist IMU (acc + gyro) and filmed by
a pose tracker (4 joints x 3 axes), all at 50 Hz, one row per time step, doing six activities
one after another. The signals come from mmbind's synthetic generator (each 2.4 s activity
bout is one of its samples), so binding and classification are meaningful.

    python examples/own-sensors/make_demo_csv.py demo.csv
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import scipy.signal

from mmbind.client.data.synthetic import make_synthetic

JOINTS = (0, 3, 7, 11)  # four of the skeleton's 20 joints


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--trials", type=int, default=6, help="bouts of each activity per subject (default 6)"
    )
    args = parser.parse_args()
    data = make_synthetic(seed=args.seed, trials=args.trials)
    pose = scipy.signal.resample(data.windows["skeleton"], 120, axis=1)  # 30 -> 50 Hz
    channels = [3 * j + a for j in JOINTS for a in range(3)]
    header = ["subject", "session", "time_s", "activity", "ax", "ay", "az", "gx", "gy", "gz"]
    header += [f"j{j}_{a}" for j in JOINTS for a in "xyz"]
    with args.output.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(header)
        for subject in data.subject_ids:
            rows = np.flatnonzero(data.subjects == subject)
            for session, chunk in enumerate(np.array_split(rows, 2), start=1):
                t = 0
                for i in chunk:
                    label = data.class_names[int(data.labels[i])]
                    for k in range(120):
                        values = [
                            *data.windows["acc"][i, k],
                            *data.windows["gyro"][i, k],
                            *pose[i, k, channels],
                        ]
                        out.writerow(
                            [subject, session, f"{t / 50:.2f}", label]
                            + [f"{v:.5f}" for v in values]
                        )
                        t += 1
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
