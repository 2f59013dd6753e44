"""Near-duplicates: the same photo twice, resized, re-encoded, cropped or recoloured.

Two steps, because neither signal alone is enough:

1. Candidates: for every image, its nearest neighbours by the frozen base's features (cosine
   similarity of mean-centred vectors) and by a 16 x 16 colour thumbnail (normalised per
   channel): pooled ImageNet features alone miss too many resized, recoloured copies.
2. Verification: each candidate pair is aligned and compared pixel by pixel. One image, shrunk
   to 100%, 95%, 90%, 85% or 80% of the other's size, slides over the other (a 10% crop moves
   the content by up to 10%), and the score is the best normalised cross-correlation, per
   colour channel (so brightness and colour shifts do not count), averaged over the channels,
   at 64 x 64. Copies score near 1; different photos of similar things lower, because at 64
   pixels prints, folds and backgrounds no longer line up.

Why two signals, and how the threshold was chosen: docs/notes-from-code.md.

>>> rng = np.random.default_rng(0)
>>> def scene():  # smooth random colours, like a photo at 64 px
...     return np.asarray(Image.fromarray(rng.integers(0, 255, (8, 8, 3), np.uint8))
...                       .resize((80, 80), Image.BICUBIC))
>>> photo, other = scene(), scene()
>>> copy = np.asarray(Image.fromarray(photo[6:78, 2:74]).resize((40, 40))) * 0.9 + 10
>>> scores = aligned_similarity([photo, copy, other], np.array([[0, 1], [0, 2]]))
>>> bool(scores[0] > 0.8), bool(scores[1] < 0.2)
(True, False)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageFilter

NEIGHBOURS = 5  # candidates per image from each signal
SIZE = 64  # pixels, for the aligned comparison
SCALES = (1.0, 0.95, 0.9, 0.85, 0.8)  # relative size of the part one image may show of the other
BAND_SIGMAS = (1.0, 4.0)  # pixels at SIZE: the band-pass keeps detail between these scales
TINY = 16  # pixels, the thumbnail used to find candidates
CHUNK = 256  # pairs (or rows) per batch: bounds memory
DUPLICATE_THRESHOLD = 0.9  # aligned similarity (measured: see above)


def candidate_pairs(features: np.ndarray, images: Sequence[np.ndarray]) -> np.ndarray:
    """(i, j) pairs, i < j, that are among each other's nearest neighbours by either signal."""
    pairs = [
        nearest_neighbours(unit_rows(features - features.mean(axis=0)), NEIGHBOURS),
        nearest_neighbours(_tiny_vectors(images), NEIGHBOURS),
    ]
    rows = np.concatenate(
        [np.stack([np.repeat(np.arange(len(nn)), nn.shape[1]), nn.ravel()], 1) for nn in pairs]
    )
    rows = np.sort(rows, axis=1)
    rows = rows[rows[:, 0] != rows[:, 1]]
    return np.unique(rows, axis=0)


def nearest_neighbours(unit: np.ndarray, k: int) -> np.ndarray:
    """Indices of each row's k most similar other rows (cosine of unit vectors), in blocks."""
    k = min(k, len(unit) - 1)
    out = np.zeros((len(unit), max(k, 0)), dtype=np.int64)
    if k <= 0:
        return out
    for start in range(0, len(unit), CHUNK):
        block = unit[start : start + CHUNK] @ unit.T
        block[np.arange(len(block)), np.arange(start, start + len(block))] = -np.inf
        out[start : start + len(block)] = np.argpartition(-block, k - 1, axis=1)[:, :k]
    return out


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


def aligned_similarity(images: Sequence[np.ndarray], pairs: np.ndarray) -> np.ndarray:
    """For each pair (i, j): the best normalised cross-correlation of one image's band-pass
    detail, shrunk by each of SCALES, slid over the other's, both ways round. -1..1."""
    from scipy import fft  # the optional `doctor` extra (run_doctor checks it first)

    canvas = np.stack([_band(image, SIZE) for image in images])  # (N, S, S)
    canvas_spectrum = fft.rfft2(canvas, workers=-1)
    scores = np.full(len(pairs), -1.0, dtype=np.float32)
    for scale in SCALES:
        side = round(SIZE * scale)
        valid = SIZE - side + 1
        templates = np.stack([_normalised(_band(image, side)) for image in images])
        template_spectrum = np.conj(fft.rfft2(templates, s=(SIZE, SIZE), workers=-1))
        sums, squares = _window_sums(canvas, side), _window_sums(canvas**2, side)
        spread = np.sqrt(np.maximum(squares - sums**2 / side**2, 1e-6))
        for start in range(0, len(pairs), CHUNK):
            chunk = pairs[start : start + CHUNK]
            for a, b in ((0, 1), (1, 0)):
                product = canvas_spectrum[chunk[:, a]] * template_spectrum[chunk[:, b]]
                correlation = fft.irfft2(product, s=(SIZE, SIZE), workers=-1)[:, :valid, :valid]
                best = (correlation / spread[chunk[:, a]]).reshape(len(chunk), -1).max(axis=1)
                np.maximum(
                    scores[start : start + len(chunk)], best, out=scores[start : start + len(chunk)]
                )
    return scores


def _window_sums(values: np.ndarray, side: int) -> np.ndarray:
    """Sums over every side x side window of the last two axes (valid positions only)."""
    padded = np.pad(values.astype(np.float64), [(0, 0)] * (values.ndim - 2) + [(1, 0), (1, 0)])
    total = padded.cumsum(axis=-1).cumsum(axis=-2)
    return (
        total[..., side:, side:]
        - total[..., :-side, side:]
        - total[..., side:, :-side]
        + total[..., :-side, :-side]
    ).astype(np.float32)


def _band(image: np.ndarray, side: int) -> np.ndarray:
    """The image's detail at `side` pixels: grey, minus a blurred copy of itself (a band-pass,
    difference of Gaussians). Silhouettes and backgrounds, which different photos of similar
    things share, drop out; prints, folds and texture, which a copy keeps, stay."""
    grey = Image.fromarray(np.asarray(image, np.uint8)).convert("L").resize((side, side), Image.BOX)
    fine, coarse = (
        np.asarray(grey.filter(ImageFilter.GaussianBlur(sigma * side / SIZE)), np.float32)
        for sigma in BAND_SIGMAS
    )
    return fine - coarse


def _tiny_vectors(images: Sequence[np.ndarray]) -> np.ndarray:
    tiny = np.stack([_normalised(_resized(image, TINY)) for image in images])
    return unit_rows(tiny.reshape(len(tiny), -1))


def _resized(image: np.ndarray, side: int) -> np.ndarray:
    return np.asarray(
        Image.fromarray(np.asarray(image, np.uint8)).resize((side, side), Image.BOX), np.float32
    )


def _normalised(image: np.ndarray) -> np.ndarray:
    """Zero mean and unit norm per colour channel: brightness and colour shifts drop out."""
    centred = image - image.mean(axis=(0, 1), keepdims=True)
    norms = np.sqrt((centred**2).sum(axis=(0, 1), keepdims=True))
    return (centred / np.maximum(norms, 1e-6)).astype(np.float32)
