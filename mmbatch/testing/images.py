"""Synthetic, deterministic image corpora (files and Parquet) for tests and the offline quickstart.

Image ``i`` is always the same picture: a coloured shape (square, circle, triangle or
stripes) on a plain background, with colours, position and size drawn from
``random.Random(i)``. :func:`describe` gives its ground-truth caption, which is what the
``references`` column of :func:`write_image_parquet` is made of.

With ``with_bad=True`` the Parquet corpus also holds one row of each kind in
:data:`BAD_KINDS` -- bytes no image decoder should accept (or, for ``bomb``, that Pillow
refuses with ``DecompressionBombError``) -- so error accounting can be tested.
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

__all__ = [
    "COLORS",
    "SHAPES",
    "BAD_KINDS",
    "image_spec",
    "describe",
    "references",
    "synthetic_image",
    "encode",
    "bad_image_bytes",
    "decompression_bomb_png",
    "write_image_folder",
    "write_image_parquet",
    "iter_ids",
]

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 60),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 40),
    "black": (15, 15, 15),
    "white": (245, 245, 245),
    "orange": (250, 140, 20),
    "purple": (130, 40, 170),
    "pink": (250, 150, 190),
    "gray": (128, 128, 128),
}
SHAPES: tuple[str, ...] = ("square", "circle", "triangle", "stripes")

#: The kinds of bad rows ``write_image_parquet(..., with_bad=True)`` adds; the row id is ``"bad-<kind>"``.
BAD_KINDS: tuple[str, ...] = ("corrupt", "truncated", "empty", "text", "bomb")

_EXT = {
    "JPEG": ".jpg",
    "JPG": ".jpg",
    "PNG": ".png",
    "WEBP": ".webp",
    "BMP": ".bmp",
    "GIF": ".gif",
    "TIFF": ".tiff",
}


def image_spec(i: int) -> dict:
    """The parameters of image ``i``: shape, colours, and box as fractions of the canvas."""
    rng = random.Random(i)
    names = list(COLORS)
    shape = SHAPES[i % len(SHAPES)]
    fg = names[rng.randrange(len(names))]
    bg = rng.choice([c for c in names if c != fg])
    w = rng.uniform(0.35, 0.7)
    h = w if shape in ("square", "circle") else rng.uniform(0.35, 0.7)
    x0 = rng.uniform(0.05, 0.95 - w)
    y0 = rng.uniform(0.05, 0.95 - h)
    return {"shape": shape, "color": fg, "background": bg, "box": (x0, y0, x0 + w, y0 + h)}


def describe(i: int) -> str:
    """Ground-truth caption of image ``i``, e.g. ``"a red circle on a blue background"``."""
    s = image_spec(i)
    thing = (
        f"{s['color']} stripes"
        if s["shape"] == "stripes"
        else f"{_a(s['color'])} {s['color']} {s['shape']}"
    )
    return f"{thing} on {_a(s['background'])} {s['background']} background"


def _a(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def references(i: int) -> list[str]:
    """Three deterministic reference captions of image ``i`` (for caption-metric tests)."""
    s = image_spec(i)
    shape = "striped pattern" if s["shape"] == "stripes" else s["shape"]
    return [
        describe(i),
        f"a picture of {_a(s['color'])} {s['color']} {shape}",
        f"a {shape} that is {s['color']} in front of {_a(s['background'])} {s['background']} wall",
    ]


def synthetic_image(i: int, size: tuple[int, int] = (64, 64), mode: str = "RGB") -> Image.Image:
    """Image ``i`` (deterministic) at ``size=(width, height)``."""
    width, height = int(size[0]), int(size[1])
    if width <= 0 or height <= 0:
        raise ValueError(f"size must be positive, got {size!r}")
    s = image_spec(i)
    img = Image.new("RGB", (width, height), COLORS[s["background"]])
    draw = ImageDraw.Draw(img)
    x0, y0, x1, y1 = s["box"]
    box = [
        x0 * width,
        y0 * height,
        max(x0 * width + 1, x1 * width - 1),
        max(y0 * height + 1, y1 * height - 1),
    ]
    fill = COLORS[s["color"]]
    if s["shape"] == "square":
        draw.rectangle(box, fill=fill)
    elif s["shape"] == "circle":
        draw.ellipse(box, fill=fill)
    elif s["shape"] == "triangle":
        draw.polygon(
            [((box[0] + box[2]) / 2, box[1]), (box[0], box[3]), (box[2], box[3])], fill=fill
        )
    else:  # stripes across the whole image
        step = max(2, width // 8)
        for x in range(0, width, 2 * step):
            draw.rectangle([x, 0, x + step - 1, height], fill=fill)
    return img if mode == "RGB" else img.convert(mode)


def encode(img: Image.Image, fmt: str = "JPEG", quality: int = 90, orientation: int | None = None) -> bytes:
    """Encode ``img`` as ``fmt`` (``"JPEG"``, ``"PNG"``, or any format Pillow writes).

    ``quality`` applies to lossy formats; ``orientation`` (1-8) writes that EXIF orientation
    tag, as a camera held sideways does. The output is deterministic for a given image."""
    fmt = fmt.upper()
    if fmt == "JPG":
        fmt = "JPEG"
    extra = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        extra["exif"] = exif.tobytes()
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.convert("RGB").save(buf, format="JPEG", quality=quality, **extra)
    elif fmt == "WEBP":
        img.save(buf, format="WEBP", quality=quality, **extra)
    else:
        img.save(buf, format=fmt, **extra)
    return buf.getvalue()


# --------------------------------------------------------------------------- bad inputs


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def decompression_bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A ~100-byte PNG whose valid IHDR declares ``width`` x ``height`` RGB pixels.

    ``PIL.Image.open`` raises ``DecompressionBombError`` for it (30000² is > 2x Pillow's default
    ``MAX_IMAGE_PIXELS``); the single IDAT holds only one compressed scanline, so a decoder whose
    limit is disabled fails on truncated data rather than producing an image."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (1 + 3 * min(width, 64)), 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def bad_image_bytes() -> dict[str, bytes]:
    """One payload per kind in :data:`BAD_KINDS` (deterministic)."""
    rng = random.Random(12345)
    good = encode(synthetic_image(0, (64, 64)), "JPEG", quality=90)
    return {
        # starts like a JPEG (SOI + APP0 marker) then garbage
        "corrupt": b"\xff\xd8\xff\xe0" + bytes(rng.randrange(256) for _ in range(512)),
        # a real JPEG cut in half (Image.open succeeds, .load() raises "image file is truncated")
        "truncated": good[: len(good) // 2],
        "empty": b"",
        "text": b"This is a plain text file, not an image.\nid,caption\n1,a red square\n",
        "bomb": decompression_bomb_png(),
    }


# --------------------------------------------------------------------------- writers


def write_image_folder(
    directory: str | Path,
    n: int,
    size: tuple[int, int] = (64, 64),
    fmt: str = "JPEG",
    quality: int = 90,
    start: int = 0,
) -> list[Path]:
    """Write images ``start .. start+n-1`` as ``img-00000.jpg`` ... into ``directory``; returns the paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ext = _EXT.get(fmt.upper(), "." + fmt.lower())
    paths = []
    for i in range(start, start + n):
        p = directory / f"img-{i:05d}{ext}"
        p.write_bytes(encode(synthetic_image(i, size), fmt, quality))
        paths.append(p)
    return paths


def _rows(
    n: int, size: tuple[int, int], fmt: str, quality: int, with_bad: bool
) -> tuple[list[tuple[str, bytes, list[str]]], list[str]]:
    rows = [
        (f"img-{i:05d}", encode(synthetic_image(i, size), fmt, quality), references(i))
        for i in range(n)
    ]
    bad_ids: list[str] = []
    if with_bad:
        # spread the bad rows through the corpus (deterministically) instead of bunching them at the end
        for k, (kind, payload) in enumerate(bad_image_bytes().items()):
            pos = min(len(rows), round((k + 1) * n / (len(BAD_KINDS) + 1)) + k)
            rows.insert(pos, (f"bad-{kind}", payload, ["an unreadable image"]))
            bad_ids.append(f"bad-{kind}")
    return rows, bad_ids


def write_image_parquet(
    path_or_dir: str | Path,
    n: int,
    size: tuple[int, int] = (64, 64),
    shards: int = 1,
    with_bad: bool = False,
    fmt: str = "JPEG",
    quality: int = 90,
    row_group_rows: int | None = None,
) -> list[str]:
    """Write ``n`` synthetic images (plus, with ``with_bad``, one row per :data:`BAD_KINDS`) as Parquet
    (in row groups of ``row_group_rows``; default: one per file).

    Columns: ``id`` (string: ``img-00000`` ..., ``bad-<kind>``), ``image`` (binary: encoded bytes)
    and ``references`` (list<string>: three captions from :func:`references`).

    If ``path_or_dir`` ends in ``.parquet`` and ``shards == 1`` it is the file written; otherwise it
    is a directory that receives ``part-00000.parquet`` ... (rows split into ``shards`` contiguous,
    near-equal shards, order kept). Returns the ids of the bad rows (``[]`` without ``with_bad``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if n < 0 or shards < 1:
        raise ValueError(f"need n >= 0 and shards >= 1, got n={n}, shards={shards}")
    target = Path(path_or_dir)
    rows, bad_ids = _rows(n, size, fmt, quality, with_bad)
    schema = pa.schema(
        [("id", pa.string()), ("image", pa.binary()), ("references", pa.list_(pa.string()))]
    )

    if shards == 1 and target.suffix == ".parquet":
        target.parent.mkdir(parents=True, exist_ok=True)
        files = [target]
    else:
        target.mkdir(parents=True, exist_ok=True)
        files = [target / f"part-{s:05d}.parquet" for s in range(shards)]

    total = len(rows)
    for s, file in enumerate(files):
        chunk = rows[s * total // len(files) : (s + 1) * total // len(files)]
        table = pa.table(
            {
                "id": pa.array([r[0] for r in chunk], pa.string()),
                "image": pa.array([r[1] for r in chunk], pa.binary()),
                "references": pa.array([r[2] for r in chunk], pa.list_(pa.string())),
            },
            schema=schema,
        )
        pq.write_table(table, file, row_group_size=row_group_rows)
    return bad_ids


def iter_ids(n: int, with_bad: bool = False) -> Sequence[str]:
    """The ids :func:`write_image_parquet` writes for ``n`` / ``with_bad``, in row order."""
    rows, _ = _rows(n, (8, 8), "PNG", 90, with_bad)
    return [r[0] for r in rows]
