"""Write the odd files real datasets contain: broken, empty, exotic modes, misnamed."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

# file name -> expected outcome: "skip" (with a reason) or "convert" (with a note)
ODD_FILES = {
    "corrupt.jpg": "skip",
    "truncated.jpg": "skip",
    "empty.png": "skip",
    "notes.txt": "skip",
    "grayscale.jpg": "convert",
    "cmyk.jpg": "convert",
    "rgba.png": "convert",
    "palette_alpha.png": "convert",
    "gray16.png": "convert",
    "rgb16.png": "convert",
    "misnamed.jpg": "convert",  # PNG bytes behind a .jpg name
    "animated.gif": "convert",
    "rotated.jpg": "convert",  # EXIF orientation 6
}


def _photo(size: int = 40, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    pixels[size // 4 : size // 2, :, 0] = 255
    return Image.fromarray(pixels)


def _png16(width: int, height: int, channels: int, seed: int = 0) -> bytes:
    """A 16-bit PNG written by hand: Pillow cannot write 16-bit RGB itself."""
    rng = np.random.default_rng(seed)
    samples = rng.integers(0, 65536, (height, width * channels), dtype=np.uint16)
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in samples)
    colour_type = 2 if channels == 3 else 0

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def write_odd_files(folder: Path) -> dict[str, str]:
    """Write every file of ODD_FILES into `folder`; returns ODD_FILES."""
    folder.mkdir(parents=True, exist_ok=True)
    photo = _photo()
    jpeg = io.BytesIO()
    photo.save(jpeg, "JPEG", quality=90)
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8)
    (folder / "truncated.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image\n")
    photo.convert("L").save(folder / "grayscale.jpg")
    photo.convert("CMYK").save(folder / "cmyk.jpg")
    rgba = photo.convert("RGBA")
    rgba.putalpha(128)
    rgba.save(folder / "rgba.png")
    palette = photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.info["transparency"] = 0
    palette.save(folder / "palette_alpha.png", transparency=0)
    gray16 = Image.fromarray(np.linspace(0, 65535, 40 * 40, dtype=np.uint16).reshape(40, 40))
    gray16.save(folder / "gray16.png")
    (folder / "rgb16.png").write_bytes(_png16(40, 40, 3))
    photo.save(folder / "misnamed.jpg", format="PNG")
    frames = [_photo(seed=i).convert("P") for i in range(3)]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:])
    exif = Image.Exif()
    exif[0x0112] = 6
    photo.save(folder / "rotated.jpg", exif=exif.tobytes())
    return ODD_FILES
