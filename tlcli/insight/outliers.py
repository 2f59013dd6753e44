"""Outliers: images far from every other image of the data (a wrong-domain file, a blank frame).

Each image's score is its mean cosine distance to its NEIGHBOURS nearest images (the frozen
base's features as they are: centring them hides what an image lacks, and the placeholder GIF
in hymenoptera fell from the most isolated image to the 164th of 398). An image is an outlier
when that distance is more than MAD_LIMIT robust standard deviations (1.4826 x the median
absolute deviation) above the median: a rule that follows each dataset's own spread instead of
a fixed distance, which would mean something else for every base. Measured on hymenoptera
(MobileNetV2 ImageNet features, 160 px, 398 images): the placeholder `imageNotFound.gif` scores
4.6, the most isolated photograph 3.7; the limit sits between.

>>> rng = np.random.default_rng(2)
>>> features = np.concatenate([rng.normal(0, 1, (60, 8)) + 2, [[-40.0] * 8]])
>>> find_outliers(features).rows.tolist()
[60]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tlcli.insight.duplicates import CHUNK, unit_rows

NEIGHBOURS = 5
MAD_LIMIT = 4.0  # robust standard deviations above the median (measured: see above)


@dataclass
class Outliers:
    rows: np.ndarray  # image indices, most isolated first
    distance: np.ndarray  # mean cosine distance to the nearest images, per row
    limit: float


def find_outliers(features: np.ndarray) -> Outliers:
    unit = unit_rows(features)
    k = min(NEIGHBOURS, len(unit) - 1)
    if k < 1:
        return Outliers(np.zeros(0, dtype=np.int64), np.zeros(0), float("nan"))
    distance = np.zeros(len(unit))
    for start in range(0, len(unit), CHUNK):
        block = unit[start : start + CHUNK] @ unit.T
        block[np.arange(len(block)), np.arange(start, start + len(block))] = -np.inf
        nearest = -np.partition(-block, k - 1, axis=1)[:, :k]
        distance[start : start + len(block)] = 1 - nearest.mean(axis=1)
    median = np.median(distance)
    spread = 1.4826 * np.median(np.abs(distance - median))
    limit = float(median + MAD_LIMIT * max(spread, 1e-6))
    rows = np.flatnonzero(distance > limit)
    rows = rows[np.argsort(-distance[rows])]
    return Outliers(rows, distance[rows], limit)
