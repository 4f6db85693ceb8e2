"""Input formats: one table, name -> file extensions, the column a file's bytes go to, and
the Ray Data reader. Adding a format is one entry here (and its reader below)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyarrow.fs import FileSystem

Reader = Callable[[list[str], FileSystem, list[str] | None], Any]


def read_parquet(files: list[str], filesystem: FileSystem, columns: list[str] | None) -> Any:
    """Ray Data's Parquet reader, one read task per file, its rows cut into blocks as read.

    Ray 2.60's default (DataSourceV2) packs all the files into one read task that returns a
    single block (2,000 rows of 640x480 JPEGs: one 180 MB block), so every later stage runs as
    one task and the cores wait; its earlier reader (``use_datasource_v2 = False``) reads the
    files in parallel tasks and splits their output into blocks of ``target_max_block_size``."""
    import ray.data as rd
    from ray.data import DataContext

    ctx = DataContext.get_current()
    v2 = getattr(ctx, "use_datasource_v2", False)
    ctx.use_datasource_v2 = False
    try:
        # batch_size: rows per Arrow batch read, so blocks can be cut small within a file
        return rd.read_parquet(files, filesystem=filesystem, columns=columns, batch_size=256)
    finally:
        ctx.use_datasource_v2 = v2


def read_files(files: list[str], filesystem: FileSystem, columns: list[str] | None) -> Any:
    """One row per file: ``path`` and ``bytes`` (renamed to the format's file column)."""
    import ray.data as rd

    return rd.read_binary_files(files, filesystem=filesystem, include_paths=True)


@dataclass(frozen=True)
class InputFormat:
    name: str
    extensions: tuple[str, ...]
    reader: Reader
    file_column: str | None = None
    """Raw-file formats: the column holding each file's bytes (``path`` names the file)."""

    @property
    def columns(self) -> list[str] | None:
        """The columns a raw-file format provides (None: read from the files' schema)."""
        return None if self.file_column is None else ["path", self.file_column]


FORMATS: dict[str, InputFormat] = {
    f.name: f
    for f in (
        InputFormat("parquet", (".parquet",), read_parquet),
        InputFormat(
            "images", (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"), read_files, "image"
        ),
        InputFormat("audio", (".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus", ".aac", ".webm"), read_files, "audio"),
        InputFormat("video", (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v"), read_files, "video"),
    )
}


def input_format(name: str) -> InputFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown input format '{name}'; known: {', '.join(FORMATS)}") from None
