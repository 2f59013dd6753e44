"""Generate the synthetic ``sample_data/`` used by the tlcli quickstart.

Run as ``python scripts/make_sample_data.py [--out sample_data] [--seed 0]``.
Needs only Pillow and NumPy; the output (names and pixels) depends only on
the seed.  Old content of ``--out`` is removed first (only a folder this script
made, unless ``--force``).  Layout, 32x32 RGB images, every third file a JPEG
and the rest PNG (1,166 files: 1.9 MB of data, under 5 MB on disk)::

    source/{train,val}/<class>/<class>_<NNNN>.{png,jpg}          150 / 15 per class
    target/{train,val,test}/<class>/<class>_<NNNN>.{png,jpg}     12 / 12 / 20 per class

Each image shows ONE procedurally drawn, filled silhouette:

* SOURCE task, for pre-training a base from scratch (6 classes, 900 training
  images): circle, triangle, square, crescent, arrow, heart.
* TARGET task, few-shot (4 *other* classes, 12 training images each): ring,
  frame (a hollow square), chevron, teardrop.

Why it shows transfer learning: the classes differ only in *shape*.  The
colours of shape and background are drawn at random for every image (from a
10-colour palette with jitter, with enough contrast to see the shape), and so
are size, aspect ratio, a small tilt (up to 10 degrees) and position; a colour
gradient, a little clutter (thin lines, dots, small outlines) and pixel noise
are added.  The four target shapes are drawn with about the same area, so mean
colour, brightness, contrast or a brightness histogram say next to nothing
about the class (a linear model on such statistics stays near chance), and 12
images per class are far too few for a network trained from scratch to learn
to see shapes.  The target shapes are, however, built from the same parts as
the source shapes - ring ~ circle and crescent (curved edges, a hole), frame ~
square (straight edges, corners), chevron ~ arrow head and triangle (slanted
edges, an apex), teardrop ~ circle with a triangle's tip (and the heart) - so
a base pre-trained on the source task already has features that separate
them, and a new head on top of it learns the target task from a few examples.
"""

from __future__ import annotations

import argparse
import math
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 32  # pixels, square; large enough for keras.applications bases
SUPERSAMPLE = 4  # draw at 4x and downsample, for anti-aliased edges
JPEG_EVERY = 3  # every third file (index % 3 == 2) is a JPEG, the rest PNG
RADIUS = (0.28, 0.38)  # shape radius as a fraction of the image side
MAX_ROTATION = 10.0  # degrees either way: shapes stay roughly upright
MAX_CLUTTER = 2  # thin lines / dots / small outlines behind the shape
NOISE = (1.0, 4.0)  # range of the Gaussian pixel-noise sigma (0..255 scale)

# A small palette: colour alone then cannot single out a training image, so a
# network has to look at the shape instead of memorising colour pairs.
PALETTE = np.array(
    [
        (20, 20, 20),
        (235, 235, 235),
        (128, 128, 128),
        (220, 40, 40),
        (40, 170, 60),
        (40, 70, 220),
        (240, 210, 40),
        (40, 200, 210),
        (200, 60, 200),
        (240, 140, 30),
    ]
)

# Images per class and split.
# Sized for the quickstart's budget (pretraining VGG16 in about two minutes on 2 CPU cores)
# and for the repository (file count, not pixels, decides the size on disk).
SOURCE_COUNTS = {"train": 150, "val": 15}
TARGET_COUNTS = {"train": 12, "val": 12, "test": 20}

Polygon = list[tuple[float, float]]
# A shape is a list of (polygon, fill) pairs in unit coordinates (radius ~1);
# fill 255 adds area, fill 0 cuts a hole.
Shape = list[tuple[Polygon, int]]


def _ngon(n: int, radius: float = 1.0, phase: float = 0.0) -> Polygon:
    """Return a regular n-gon (many vertices approximate a circle)."""
    return [
        (
            radius * math.cos(phase + 2 * math.pi * k / n),
            radius * math.sin(phase + 2 * math.pi * k / n),
        )
        for k in range(n)
    ]


def _shift(poly: Polygon, dx: float, dy: float) -> Polygon:
    """Translate a polygon."""
    return [(x + dx, y + dy) for x, y in poly]


def _circle() -> Shape:
    return [(_ngon(64), 255)]


def _triangle() -> Shape:
    return [(_shift(_ngon(3, 1.1, -math.pi / 2), 0, 0.2), 255)]


def _square() -> Shape:
    return [(_ngon(4, 1.0, math.pi / 4), 255)]


def _crescent() -> Shape:
    return [(_ngon(64), 255), (_shift(_ngon(64, 0.85), 0.5, 0.0), 0)]


def _arrow() -> Shape:
    return [
        (
            [
                (-1, -0.22),
                (0.15, -0.22),
                (0.15, -0.6),
                (1, 0),
                (0.15, 0.6),
                (0.15, 0.22),
                (-1, 0.22),
            ],
            255,
        )
    ]


def _heart() -> Shape:
    points = []
    for k in range(64):
        t = 2 * math.pi * k / 64
        x = 16 * math.sin(t) ** 3
        y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
        points.append((x / 16.5, -(y + 2.5) / 16.5))
    return [(points, 255)]


def _ring() -> Shape:
    return [(_ngon(64), 255), (_ngon(64, 0.74), 0)]


def _frame() -> Shape:
    return [(_ngon(4, 1.0, math.pi / 4), 255), (_ngon(4, 0.57, math.pi / 4), 0)]


def _chevron() -> Shape:
    return [([(-1, 0.45), (0, -0.55), (1, 0.45), (0.45, 0.95), (0, 0.45), (-0.45, 0.95)], 255)]


def _teardrop() -> Shape:
    # A circle (radius 0.55, centre 0.4 below the origin) drawn out into a tip at (0, -1).
    radius, centre = 0.55, 0.4
    half_gap = math.acos(radius / (1 + centre))  # where the tangents from the tip touch
    points = [(0.0, -1.0)]
    for k in range(41):
        angle = -math.pi / 2 + half_gap + (2 * math.pi - 2 * half_gap) * k / 40
        points.append((radius * math.cos(angle), centre + radius * math.sin(angle)))
    return [(points, 255)]


SOURCE_CLASSES: dict[str, Callable[[], Shape]] = {
    "circle": _circle,
    "triangle": _triangle,
    "square": _square,
    "crescent": _crescent,
    "arrow": _arrow,
    "heart": _heart,
}
TARGET_CLASSES: dict[str, Callable[[], Shape]] = {
    "ring": _ring,
    "frame": _frame,
    "chevron": _chevron,
    "teardrop": _teardrop,
}
TASKS = {
    "source": (SOURCE_CLASSES, SOURCE_COUNTS),
    "target": (TARGET_CLASSES, TARGET_COUNTS),
}


def _luma(rgb: np.ndarray) -> float:
    """Perceived brightness of an RGB colour (ITU-R BT.601 weights)."""
    return float(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])


def _colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random foreground/background colours that differ enough to see."""
    while True:
        i, j = rng.choice(len(PALETTE), size=2, replace=False)
        fg = np.clip(PALETTE[i] + rng.integers(-15, 16, size=3), 0, 255)
        bg = np.clip(PALETTE[j] + rng.integers(-15, 16, size=3), 0, 255)
        if abs(_luma(fg) - _luma(bg)) >= 40:
            return fg, bg


def _background(rng: np.random.Generator, bg: np.ndarray, side: int) -> Image.Image:
    """A linear colour gradient around ``bg`` in a random direction."""
    other = np.clip(bg + rng.integers(-50, 51, size=3), 0, 255)
    angle = rng.uniform(0, 2 * math.pi)
    ys, xs = np.mgrid[0:side, 0:side] / (side - 1) - 0.5
    t = np.clip(0.5 + xs * math.cos(angle) + ys * math.sin(angle), 0, 1)[..., None]
    pixels = (1 - t) * bg + t * other
    return Image.fromarray(pixels.astype(np.uint8), "RGB")


def _clutter(rng: np.random.Generator, draw: ImageDraw.ImageDraw, side: int) -> None:
    """Thin lines, dots and small outlines in random colours."""
    for _ in range(int(rng.integers(0, MAX_CLUTTER + 1))):
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        kind = rng.integers(0, 3)
        if kind == 0:
            x0, y0, x1, y1 = (float(v) for v in rng.uniform(0, side, size=4))
            width = int(rng.integers(1, 3)) * SUPERSAMPLE
            draw.line([(x0, y0), (x1, y1)], fill=colour, width=width)
        else:
            cx, cy = (float(v) for v in rng.uniform(0, side, size=2))
            radius = float(rng.uniform(0.5, 2.0)) * SUPERSAMPLE
            box = [cx - radius, cy - radius, cx + radius, cy + radius]
            if kind == 1:
                draw.ellipse(box, fill=colour)
            else:
                draw.ellipse(box, outline=colour, width=SUPERSAMPLE)


def _shape_mask(rng: np.random.Generator, shape: Shape, side: int) -> Image.Image:
    """Draw the shape at a random scale, aspect, rotation and position."""
    # Normalise so that the farthest vertex lies at distance ``radius``.
    extent = max(math.hypot(x, y) for poly, _ in shape for x, y in poly)
    radius = rng.uniform(*RADIUS) * side / extent
    stretch = rng.uniform(0.8, 1.2)
    sx, sy = radius * stretch, radius / stretch
    angle = rng.uniform(-MAX_ROTATION, MAX_ROTATION) * math.pi / 180
    cos, sin = math.cos(angle), math.sin(angle)
    polygons = [
        ([(x * sx * cos - y * sy * sin, x * sx * sin + y * sy * cos) for x, y in poly], fill)
        for poly, fill in shape
    ]
    # Place the shape so that it lies wholly inside the image.
    xs = [x for poly, _ in polygons for x, _ in poly]
    ys = [y for poly, _ in polygons for _, y in poly]
    pad = SUPERSAMPLE
    cx = rng.uniform(pad - min(xs), side - pad - max(xs))
    cy = rng.uniform(pad - min(ys), side - pad - max(ys))
    mask = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(mask)
    for poly, fill in polygons:
        draw.polygon([(cx + x, cy + y) for x, y in poly], fill=fill)
    return mask


def render(rng: np.random.Generator, shape: Shape, size: int = IMAGE_SIZE) -> Image.Image:
    """Render one image of ``shape`` with random colours, pose and clutter."""
    side = size * SUPERSAMPLE
    fg, bg = _colours(rng)
    image = _background(rng, bg, side)
    _clutter(rng, ImageDraw.Draw(image), side)
    mask = _shape_mask(rng, shape, side)
    image.paste(tuple(int(c) for c in fg), (0, 0), mask)
    image = image.resize((size, size), Image.Resampling.BOX)
    pixels = np.asarray(image, dtype=np.float32)
    pixels += rng.normal(0.0, rng.uniform(*NOISE), size=pixels.shape)
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")


def _clear(out: Path, force: bool = False) -> None:
    """Empty ``out`` (create it if needed); never touch anything outside it.

    Only a folder this script made before (holding nothing but ``source`` and
    ``target``) is emptied unless ``force`` is set, so that a mistyped
    ``--out`` cannot wipe unrelated files.
    """
    out = out.resolve()
    cwd = Path.cwd().resolve()
    if out == Path(out.anchor) or out == Path.home().resolve() or out in (cwd, *cwd.parents):
        raise SystemExit(f"refusing to clear {out}: choose a dedicated folder")
    if out.is_dir():
        entries = list(out.iterdir())
        unexpected = sorted(e.name for e in entries if e.name not in TASKS)
        if unexpected and not force:
            raise SystemExit(
                f"refusing to clear {out}: it holds {', '.join(unexpected)} "
                "(not made by this script); pass --force to empty it anyway"
            )
        for entry in entries:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    out.mkdir(parents=True, exist_ok=True)


def generate(out: Path, seed: int = 0, size: int = IMAGE_SIZE, force: bool = False) -> int:
    """Write the whole data set under ``out``; return the number of files."""
    _clear(out, force)
    written = 0
    for task_id, (task, (classes, counts)) in enumerate(TASKS.items()):
        for split_id, (split, count) in enumerate(counts.items()):
            for class_id, (name, make_shape) in enumerate(classes.items()):
                folder = out / task / split / name
                folder.mkdir(parents=True)
                shape = make_shape()
                for index in range(count):
                    # One independent stream per file: stable names and pixels.
                    rng = np.random.default_rng([seed, task_id, split_id, class_id, index])
                    image = render(rng, shape, size)
                    if index % JPEG_EVERY == JPEG_EVERY - 1:
                        image.save(folder / f"{name}_{index:04d}.jpg", quality=90)
                    else:
                        image.save(folder / f"{name}_{index:04d}.png", optimize=True)
                    written += 1
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("sample_data"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=IMAGE_SIZE, help="image side in pixels")
    parser.add_argument(
        "--force", action="store_true", help="empty --out even if it holds other files"
    )
    args = parser.parse_args()
    if args.size < 32:
        parser.error("--size must be at least 32 (the smallest input of VGG16/ResNet50)")
    count = generate(args.out, args.seed, args.size, args.force)
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {count} images ({total / 1e6:.2f} MB) to {args.out}")


if __name__ == "__main__":
    main()
