"""Images the suites make themselves, so that a clone without ../shared can rerun every suite.

- `make_photos`: varied JPEGs like photos of that size to decode (each its own size between 100
  and 260 px, random shapes and noise on a random background, its own JPEG quality); the class
  decides the shape drawn. What `scale` and `pipeline` time, and the `--synthetic` dataset of
  the other suites (`make_dataset`).
- `make_shapes`: a bright shape on dark noise at one size: uniform images on which some of an
  ImageNet base's channels almost never fire (hand signs or products on a plain background).

>>> import tempfile
>>> root = make_dataset(Path(tempfile.mkdtemp()), {"train": 4, "val": 2}, classes=2)
>>> sorted(p.name for p in (root / "train").iterdir())
['class_0', 'class_1']
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = 4
SHAPES = ("disc", "square", "cross", "bar")


def make_photo(path: Path, index: int, classes: int = CLASSES) -> None:
    """One varied JPEG: its class (index % classes) decides the shape drawn, its index the rest."""
    rng = np.random.default_rng(index)
    width, height = (int(v) for v in rng.integers(100, 261, 2))
    background = tuple(int(v) for v in rng.integers(0, 256, 3))
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    kind = index % classes % 4
    for _ in range(int(rng.integers(2, 6))):
        box = sorted(rng.integers(0, width, 2)), sorted(rng.integers(0, height, 2))
        xy = [box[0][0], box[1][0], box[0][1] + 1, box[1][1] + 1]
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        [draw.rectangle, draw.ellipse, draw.line, draw.polygon][kind](
            xy if kind != 3 else [(xy[0], xy[3]), (xy[2], xy[3]), (xy[0], xy[1])],
            fill=fill,
        )
    noise = rng.integers(-20, 21, (height, width, 3))
    pixels = np.clip(np.asarray(image, np.int16) + noise, 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=int(rng.integers(70, 96)))


def make_photos(folder: Path, count: int, classes: int = CLASSES, first: int = 0) -> float:
    """`count` images in folder/class_k/, numbered from `first`; returns the seconds it took."""
    started = time.perf_counter()
    for k in range(classes):
        (folder / f"class_{k}").mkdir(parents=True, exist_ok=True)
    indices = range(first, first + count)
    paths = [folder / f"class_{i % classes}" / f"{i:07d}.jpg" for i in indices]
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        list(pool.map(make_photo, paths, indices, [classes] * count))
    return time.perf_counter() - started


def make_dataset(root: Path, per_class: dict[str, int], classes: int = CLASSES) -> Path:
    """root/<split>/class_k/*.jpg with `per_class[split]` photos-like images per class."""
    first = 0
    for split, count in per_class.items():
        make_photos(root / split, count * classes, classes, first)
        first += count * classes
    return root


def draw_shape(shape: str, size: int, rng: np.random.Generator) -> Image.Image:
    """A bright shape on a dark noisy background."""
    image = Image.fromarray(rng.integers(0, 90, (size, size, 3), dtype=np.uint8))
    draw = ImageDraw.Draw(image)
    colour = tuple(int(v) for v in rng.integers(150, 256, 3))
    cx, cy = (int(v) for v in rng.integers(size * 0.35, size * 0.65, 2))
    r = int(rng.integers(size // 6, size // 4 + 1))
    if shape == "disc":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif shape == "square":
        draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif shape == "cross":
        width = max(2, size // 12)
        draw.line([cx - r, cy, cx + r, cy], fill=colour, width=width)
        draw.line([cx, cy - r, cx, cy + r], fill=colour, width=width)
    else:  # bar
        draw.rectangle([cx - r, cy - max(1, r // 3), cx + r, cy + max(1, r // 3)], fill=colour)
    return image


def make_shapes(
    root: Path, counts: dict[str, int], classes: tuple[str, ...] = SHAPES, size: int = 40
) -> Path:
    """root/<split>/<shape>/NNN.png|jpg with `counts[split]` images per class."""
    rng = np.random.default_rng(0)
    for split, count in counts.items():
        for shape in classes:
            folder = root / split / shape
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                suffix = ".png" if i % 2 else ".jpg"
                draw_shape(shape, size, rng).save(folder / f"{i:03d}{suffix}")
    return root
