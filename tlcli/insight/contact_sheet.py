"""Contact sheets: a grid of thumbnails, each captioned, in one PNG (galleries and the doctor).

A tile holds one image, or two side by side (a pair of near-duplicates), with caption lines
under it; file names are shortened from the left to fit, so the distinctive end stays. Images
are read from their files (aspect ratio kept, EXIF orientation applied); a file that cannot be
read becomes a grey square, never an error.

>>> import tempfile
>>> from PIL import Image
>>> folder = Path(tempfile.mkdtemp())
>>> Image.new("RGB", (60, 40), "red").save(folder / "a.png")
>>> draw_contact_sheet([Tile([folder / "a.png"], ["a.png", "cat -> dog 0.91"])],
...                    folder / "sheet.png", "1 error")
>>> with Image.open(folder / "sheet.png") as sheet:
...     sheet.size
(140, 200)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from tlcli.files import atomic_path

THUMB = 128  # pixels, the longer side of each thumbnail
GAP = 6
LINE = 14  # caption line height
MAX_TILES = 48  # per sheet: the report says how many more there are in the CSV
BACKGROUND = "white"


@dataclass
class Tile:
    images: list[Path]  # one, or two shown side by side
    caption: list[str]


def draw_contact_sheet(
    tiles: list[Tile], target: Path, title: str, columns: int | None = None
) -> None:
    """Draw `tiles` (the first MAX_TILES) in a grid under `title`, write `target` atomically."""
    tiles = tiles[:MAX_TILES]
    font = _font(11)
    per_tile = max((len(t.images) for t in tiles), default=1)
    lines = max((len(t.caption) for t in tiles), default=0)
    cell_w = per_tile * THUMB + (per_tile - 1) * GAP
    cell_h = THUMB + lines * LINE + 4
    columns = columns or max(1, min(len(tiles), 8 // per_tile or 1))
    rows = max(1, -(-len(tiles) // columns))
    width = columns * (cell_w + GAP) + GAP
    title_h = 2 * LINE
    sheet = Image.new("RGB", (width, title_h + rows * (cell_h + GAP) + GAP), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    draw.text((GAP, GAP // 2), _fit(draw, title, width - 2 * GAP, font), fill="black", font=font)
    for index, tile in enumerate(tiles):
        x = GAP + (index % columns) * (cell_w + GAP)
        y = title_h + (index // columns) * (cell_h + GAP)
        for offset, path in enumerate(tile.images):
            thumb = thumbnail(path)
            left = x + offset * (THUMB + GAP) + (THUMB - thumb.width) // 2
            sheet.paste(thumb, (left, y + (THUMB - thumb.height) // 2))
        for line_no, text in enumerate(tile.caption):
            draw.text(
                (x, y + THUMB + 2 + line_no * LINE),
                _fit(draw, text, cell_w, font, from_left=line_no == 0),
                fill="black",
                font=font,
            )
    with atomic_path(target) as tmp:
        sheet.save(tmp, format="PNG", optimize=True)


def thumbnail(path: Path, size: int = THUMB) -> Image.Image:
    """The image at `path` fitted in size x size, or a grey square when it cannot be read."""
    try:
        with Image.open(path) as opened:
            opened.draft("RGB", (size, size))
            image = ImageOps.exif_transpose(opened).convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, EOFError):
        return Image.new("RGB", (size, size), "#bbbbbb")
    image.thumbnail((size, size))
    return image


def _fit(draw: ImageDraw.ImageDraw, text: str, width: int, font, from_left: bool = False) -> str:
    """`text`, cut with an ellipsis to fit `width` pixels (from the left: keep the end)."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength("…" + text, font=font) > width:
        text = text[1:] if from_left else text[:-1]
    return "…" + text if from_left else text + "…"


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow < 10.1, or without FreeType: the bitmap font
        return ImageFont.load_default()
