"""Input formats: one table, name -> file extensions, the column a file's bytes go to, and
the Ray Data reader. Adding a format is one entry here (and its reader below).

Where Ray Data's own reader fits, it is used (``read_parquet``, ``read_binary_files``,
``read_json``, ``read_csv``). Two are not:

* ``webdataset``: ``ray.data.read_webdataset`` fails the whole read task on a duplicate
  member or a key that comes back later, silently drops members without a key, and builds
  pandas frames in which a member missing from some samples turns a bytes column into
  objects and NaN. :class:`~mmbatch.pipelines.sources.TarShards` keeps Ray's file-based
  reading (listing, parallel read tasks, retries, filesystems) and groups members itself,
  making such samples error rows.
* ``huggingface``: ``ray.data.from_huggingface`` first asks the hub for Parquet files of
  the dataset (a network call, refused offline) and otherwise copies the whole table
  through the driver; :class:`~mmbatch.pipelines.sources.HFSplit` reads row ranges of the
  memory-mapped split in each read task.

And one case of Parquet: files bigger than a block, in row groups that are not, are read by
:class:`~mmbatch.pipelines.sources.ParquetRowGroups` (:func:`read_parquet_row_groups`),
since Ray's reader reads at least a whole file per task.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyarrow.fs import FileSystem

if TYPE_CHECKING:
    from .spec import InputSpec

Reader = Callable[[list[str], FileSystem, list[str] | None, "InputSpec"], Any]
"""(files, filesystem, columns to read, the job's input) -> a Ray Dataset"""


READ_BATCH_ROWS = 256
"""Rows per Arrow batch a Parquet read task reads, so blocks can be cut small within a file."""


def read_parquet(
    files: list[str], filesystem: FileSystem, columns: list[str] | None, inp: InputSpec,
    tasks: int | None = None, remote_args: dict[str, Any] | None = None,
) -> Any:
    """Ray Data's Parquet reader, one read task per file, its rows cut into blocks as read.

    Ray 2.60's default (DataSourceV2) packs all the files into one read task that returns a
    single block (2,000 rows of 640x480 JPEGs: one 180 MB block), so every later stage runs as
    one task and the cores wait; its earlier reader (``use_datasource_v2 = False``) reads the
    files in parallel tasks and splits their output into blocks of ``target_max_block_size``.

    ``tasks`` (at most ``len(files)``): read whole files in that many tasks, with
    ``remote_args``, and no split of their output: a read that Ray Data can fuse into the
    CPU stages after it (see ``executor.read_source``)."""
    import ray.data as rd
    from ray.data import DataContext

    ctx = DataContext.get_current()
    v2 = getattr(ctx, "use_datasource_v2", False)
    ctx.use_datasource_v2 = False
    grouped: dict[str, Any] = {} if tasks is None else {"override_num_blocks": tasks, **(remote_args or {})}
    try:
        return rd.read_parquet(files, filesystem=filesystem, columns=columns, batch_size=READ_BATCH_ROWS, **grouped)
    finally:
        ctx.use_datasource_v2 = v2


def read_parquet_row_groups(
    files: list[str], filesystem: FileSystem, columns: list[str] | None, row_groups: dict[str, tuple[int, ...]],
    tasks: int, remote_args: dict[str, Any],
) -> Any:
    """Parquet files in ``tasks`` read tasks (at most one per row group) of whole row groups,
    about equal in rows (``row_groups``: the rows of each, by path), with ``remote_args``: a
    file bigger than a block read as blocks, with no stage after the read to cut it, and a
    read that Ray Data can fuse into the CPU stages after it. Ray's ``read_parquet`` reads
    at least a whole file per task (see :class:`~mmbatch.pipelines.sources.ParquetRowGroups`)."""
    import ray.data as rd

    from .sources import ParquetRowGroups, split_row_groups

    runs = split_row_groups(files, row_groups, tasks)
    source = ParquetRowGroups(runs, row_groups, filesystem, columns, READ_BATCH_ROWS)
    return rd.read_datasource(source, override_num_blocks=len(runs), **remote_args)


def read_files(files: list[str], filesystem: FileSystem, columns: list[str] | None, inp: InputSpec) -> Any:
    """One row per file: ``path`` and ``bytes`` (renamed to the format's file column)."""
    import ray.data as rd

    return rd.read_binary_files(files, filesystem=filesystem, include_paths=True)


def read_webdataset(files: list[str], filesystem: FileSystem, columns: list[str] | None, inp: InputSpec) -> Any:
    """One row per sample of WebDataset tar shards, streamed (never extracted to disk)."""
    import ray.data as rd

    from . import io
    from .sources import TarShards

    fs = getattr(getattr(filesystem, "handler", None), "fs", None)
    names = {f: io.unstrip(fs, f) for f in files} if fs is not None else {}
    ds = rd.read_datasource(TarShards(files, names, inp.id_column, filesystem=filesystem))
    return _project(ds, columns, inp)


def read_huggingface(files: list[str], filesystem: FileSystem, columns: list[str] | None, inp: InputSpec) -> Any:
    """One split of a Hugging Face dataset (``files``: its Arrow files, for the manifest)."""
    import ray.data as rd

    from . import hf_source
    from .sources import HFSplit

    rows = len(hf_source.open_split(str(inp.path), inp.config, inp.split))
    return rd.read_datasource(HFSplit(str(inp.path), inp.config, inp.split, inp.id_column, columns, rows,
                                      inp.block_rows))


def read_jsonl(files: list[str], filesystem: FileSystem, columns: list[str] | None, inp: InputSpec) -> Any:
    import ray.data as rd

    return _manifest(lambda f: rd.read_json(f, filesystem=filesystem), files, filesystem, columns, inp)


def read_csv(files: list[str], filesystem: FileSystem, columns: list[str] | None, inp: InputSpec) -> Any:
    import ray.data as rd

    return _manifest(lambda f: rd.read_csv(f, filesystem=filesystem), files, filesystem, columns, inp)


def _project(ds: Any, columns: list[str] | None, inp: InputSpec) -> Any:
    if not columns:
        return ds
    keep = list(dict.fromkeys([*columns, inp.id_column, "error"]))
    return ds.map_batches(lambda t: t.select([c for c in keep if c in t.column_names]), batch_format="pyarrow")


def _manifest(read: Callable[[str | list[str]], Any], files: list[str], filesystem: FileSystem, columns: list[str] | None,
              inp: InputSpec) -> Any:
    """A manifest's rows; with ``input.path_column``, relative paths resolved against the
    folder of the manifest file that names them (one read per manifest file)."""
    if inp.path_column is None:
        return _project(read(files if len(files) > 1 else files[0]), columns, inp)
    from . import io

    fs = getattr(getattr(filesystem, "handler", None), "fs", None)
    parts = []
    for f in files:
        base = io.unstrip(fs, f) if fs is not None else f
        parts.append(read(f).map_batches(_ResolvePaths(inp.path_column, base), batch_format="pyarrow"))
    ds = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    return _project(ds, columns, inp)


@dataclass(frozen=True)
class _ResolvePaths:
    column: str
    manifest: str

    def __call__(self, table: Any) -> Any:
        import pyarrow as pa

        from .path_lists import resolve_paths

        values = resolve_paths(table.column(self.column).to_pylist(), self.manifest)
        return table.set_column(table.column_names.index(self.column), self.column, pa.array(values, pa.string()))


@dataclass(frozen=True)
class InputFormat:
    name: str
    extensions: tuple[str, ...]
    reader: Reader
    file_column: str | None = None
    """Raw-file formats: the column holding each file's bytes (``path`` names the file)."""
    description: str = ""

    @property
    def columns(self) -> list[str] | None:
        """The columns a raw-file format provides (None: read from the files' schema)."""
        return None if self.file_column is None else ["path", self.file_column]


FORMATS: dict[str, InputFormat] = {
    f.name: f
    for f in (
        InputFormat("parquet", (".parquet",), read_parquet, description="Parquet files, one row per row"),
        InputFormat(
            "images", (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"), read_files, "image",
            "a folder of image files: path + image bytes",
        ),
        InputFormat("audio", (".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus", ".aac", ".webm"), read_files, "audio",
                    "a folder of audio files: path + audio bytes"),
        InputFormat("video", (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v"), read_files, "video",
                    "a folder of video files: path + video bytes"),
        InputFormat("webdataset", (".tar",), read_webdataset,
                    description="WebDataset .tar shards (brace ranges allowed): one row per sample key"),
        InputFormat("huggingface", (), read_huggingface,
                    description="a Hugging Face dataset (save_to_disk folder, or name/folder via the HF cache)"),
        InputFormat("jsonl", (".jsonl", ".json"), read_jsonl,
                    description="JSON Lines manifests, e.g. an id and a path/URL column"),
        InputFormat("csv", (".csv",), read_csv, description="CSV manifests with a header row"),
    )
}


def input_format(name: str) -> InputFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown input format '{name}'; known: {', '.join(FORMATS)}") from None
