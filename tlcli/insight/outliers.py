"""Outliers: images unlike the rest of the data (a wrong-domain file, a blank frame, a page of
text among photos), by two statistics of the frozen base's features as they are (centring them
hides what an image lacks):

- far: the mean cosine distance to its NEIGHBOURS nearest images (noise, a chart, a placeholder
  image);
- empty: the log of the feature vector's norm, low when the base finds almost nothing to respond
  to (a blank or near-blank frame, a page of text), however close such images are to each other.

An image is an outlier when either is more than LIMIT robust standard deviations beyond the
median, on its own side: the spread is 1.4826 x the median deviation of the values on that side
of the median only, because distances to the nearest images of real photos have a long upper
tail (the most unusual ordinary photos) that the deviation of all the values understates. The
rule follows each dataset's own spread rather than a fixed distance, which would mean something
else for every base. Measured in `benchmarks/doctor_outliers.py` (README: `tlcli doctor`).

>>> rng = np.random.default_rng(2)
>>> photos = rng.normal(0, 1, (60, 8)) + 2
>>> found = find_outliers(np.concatenate([photos, [[-40.0] * 8], [[0.02] * 8]]))
>>> found.rows.tolist(), found.reasons  # a wrong-domain image, a blank one
([60, 61], ['far', 'empty'])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tlcli.insight.duplicates import CHUNK, unit_rows

NEIGHBOURS = 5
LIMIT = 4.0  # robust standard deviations beyond the median, on each statistic's own side
ROBUST_SCALE = 1.4826  # a median absolute deviation times this is a normal's standard deviation


@dataclass
class Outliers:
    rows: np.ndarray  # image indices, most unusual first
    score: np.ndarray  # robust standard deviations beyond the median, per row
    reasons: list[str]  # per row: "far" (from the nearest images) or "empty" (weak features)
    distance: np.ndarray  # mean cosine distance to the nearest images, per row
    norm: np.ndarray  # feature norm, per row
    typical_distance: float = float("nan")  # the medians over every image
    typical_norm: float = float("nan")


def find_outliers(features: np.ndarray) -> Outliers:
    if len(features) < 2:
        nothing = np.zeros(0)
        return Outliers(nothing.astype(np.int64), nothing, [], nothing, nothing)
    distance = nearest_distance(features)
    norm = np.linalg.norm(np.asarray(features, np.float64), axis=1)
    far = _beyond_median(distance, above=True)
    empty = _beyond_median(np.log(np.maximum(norm, 1e-12)), above=False)
    score = np.maximum(far, empty)
    rows = np.flatnonzero(score > LIMIT)
    rows = rows[np.argsort(-score[rows])]
    reasons = ["far" if far[i] >= empty[i] else "empty" for i in rows]
    return Outliers(
        rows, score[rows], reasons, distance[rows], norm[rows],
        float(np.median(distance)), float(np.median(norm)),
    )  # fmt: skip


def nearest_distance(features: np.ndarray) -> np.ndarray:
    """Each image's mean cosine distance to its NEIGHBOURS nearest other images."""
    unit = unit_rows(features)
    k = min(NEIGHBOURS, len(unit) - 1)
    distance = np.zeros(len(unit))
    for start in range(0, len(unit), CHUNK):
        block = unit[start : start + CHUNK] @ unit.T
        block[np.arange(len(block)), np.arange(start, start + len(block))] = -np.inf
        nearest = -np.partition(-block, k - 1, axis=1)[:, :k]
        distance[start : start + len(block)] = 1 - nearest.mean(axis=1)
    return distance


def _beyond_median(values: np.ndarray, *, above: bool) -> np.ndarray:
    """How far beyond the median each value lies, on one side, in robust standard deviations
    of that side's values (0 or less on the other side)."""
    median = np.median(values)
    beyond = (values - median) if above else (median - values)
    side = beyond[beyond > 0]
    spread = ROBUST_SCALE * np.median(side) if len(side) else 0.0
    return beyond / max(spread, 1e-9)
