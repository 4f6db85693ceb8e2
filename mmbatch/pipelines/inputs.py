"""The input, checked before anything runs: every file listed with its size and mtime, every
Parquet shard, tar shard or manifest opened (a corrupt one is named, or skipped with
``input.on_bad_file: skip``), the ids read from each (a tar's sample keys from its member
headers), the rows counted, and duplicate ids caught. No Ray here."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow.parquet as pq

from . import io
from .path_lists import check_path_column, read_path_list
from .spec import InputSpec, JobSpecError
from .tar_samples import BadShard, scan_shard


@dataclass(frozen=True)
class InputFile:
    path: str
    size: int
    mtime: str


@dataclass
class InputScan:
    files: list[InputFile]
    rows: int
    """Rows the input holds (after ``input.limit``)."""
    skipped: list[dict[str, str]] = field(default_factory=list)
    """Files left out with ``on_bad_file: skip``: path and reason."""
    duplicates: dict[Any, int] = field(default_factory=dict)
    """Ids held by more than one row, with how many rows hold each."""
    largest_file_rows: int = 1
    """Rows of the largest file (1 for raw files): files no bigger than a block need no cutting."""
    row_groups: dict[str, tuple[int, ...]] = field(default_factory=dict)
    """Parquet files: the rows of each row group, by path (a reader can read a file in
    pieces of whole row groups)."""

    @property
    def largest_piece_rows(self) -> int:
        """Rows of the largest piece a reader can read alone: a row group where every file's
        row groups are known, else a whole file."""
        if not self.row_groups or len(self.row_groups) < len(self.files):
            return self.largest_file_rows
        return max((n for groups in self.row_groups.values() for n in groups), default=1)

    @property
    def paths(self) -> list[str]:
        return [f.path for f in self.files]


def _info(fs: Any, path: str) -> InputFile:
    info = fs.info(path)
    mtime = info.get("mtime") or info.get("LastModified") or info.get("last_modified") or info.get("created") or ""
    return InputFile(path, int(info.get("size") or 0), str(mtime))


@dataclass(frozen=True)
class FileRows:
    """What the scan reads of one file: its ids, in order, and (Parquet) its row groups' rows."""

    ids: list[Any]
    row_groups: tuple[int, ...] = ()


def _ids_parquet(fs: Any, path: str, inp: InputSpec) -> FileRows:
    with fs.open(path, "rb") as f:
        pf = pq.ParquetFile(f)
        names = pf.schema_arrow.names
        if inp.id_column not in names:
            raise JobSpecError(
                f"{io.unstrip(fs, path)}: no id column '{inp.id_column}' (columns: {', '.join(names)}); "
                "set input.id_column"
            )
        column = pf.read(columns=[inp.id_column]).column(inp.id_column)
        groups = tuple(pf.metadata.row_group(i).num_rows for i in range(pf.metadata.num_row_groups))
    if column.null_count:
        raise JobSpecError(f"{io.unstrip(fs, path)}: {column.null_count} rows have a null id ('{inp.id_column}')")
    return FileRows(list(column.to_pylist()), groups)


def _ids_webdataset(fs: Any, path: str, inp: InputSpec) -> FileRows:
    """The sample keys of a shard, from its member headers (the data is skipped, not read)."""
    with fs.open(path, "rb") as f:
        return FileRows([s.key for s in scan_shard(f, io.unstrip(fs, path))])


def _ids_manifest(fs: Any, path: str, inp: InputSpec) -> FileRows:
    where = io.unstrip(fs, path)
    with fs.open(path, "rb") as f:
        table = read_path_list(f, inp.format)
    if inp.id_column not in table.column_names:
        raise JobSpecError(f"{where}: no id column '{inp.id_column}' (columns: {', '.join(table.column_names)}); "
                           "set input.id_column")
    if inp.path_column is not None:
        try:
            check_path_column(table, inp.path_column, where)
        except ValueError as exc:
            raise JobSpecError(str(exc)) from None
    column = table.column(inp.id_column)
    if column.null_count:
        raise JobSpecError(f"{where}: {column.null_count} rows have a null id ('{inp.id_column}')")
    return FileRows(list(column.to_pylist()))


IdReader = Callable[[Any, str, InputSpec], FileRows]
ID_READERS: dict[str, tuple[IdReader, str]] = {
    "parquet": (_ids_parquet, "Parquet file"),
    "webdataset": (_ids_webdataset, "tar shard"),
    "jsonl": (_ids_manifest, "JSON Lines file"),
    "csv": (_ids_manifest, "CSV file"),
}
"""format -> (the ids of one file, what a file is called in messages)"""


def _scan_huggingface(inp: InputSpec) -> InputScan:
    """A Hugging Face split: its Arrow files, its rows, and its ids (``<split>:<index>`` where
    the split has no ``input.id_column``)."""
    import os

    from .hf_source import cache_files, open_split

    try:
        ds = open_split(str(inp.path), inp.config, inp.split)
    except ValueError as exc:
        raise JobSpecError(f"input.path: {exc}") from None
    files = [InputFile(p, os.path.getsize(p), str(os.path.getmtime(p))) for p in cache_files(ds)]
    ids = Counter[Any]()
    if inp.id_column in ds.column_names:
        column = ds.with_format("arrow").data.column(inp.id_column)
        if column.null_count:
            raise JobSpecError(f"input: {inp.path}: {column.null_count} rows have a null id ('{inp.id_column}')")
        ids.update(column.to_pylist())
    return _counted(inp, files, [], ids, len(ds), min(len(ds), inp.block_rows))  # read in ranges of block_rows


def scan_input(inp: InputSpec) -> InputScan:
    """List and check the input; raise :class:`JobSpecError` naming the file and the cause."""
    fmt = inp.file_format
    if fmt.name == "huggingface":
        return _scan_huggingface(inp)
    try:
        fs, paths = io.list_files(inp.path, fmt.extensions, inp.storage_options)
    except (FileNotFoundError, OSError) as exc:
        raise JobSpecError(f"input.path: cannot list {inp.path}: {exc}") from None
    if fmt.file_column is not None:  # one row per file, the path is the id
        files = [_info(fs, p) for p in paths]
        rows = len(files) if inp.limit is None else min(inp.limit, len(files))
        return InputScan(files, rows)
    read_ids, what = ID_READERS[fmt.name]
    files, skipped, ids, largest, row_groups = [], [], Counter[Any](), 1, {}
    for path in paths:
        try:
            found = read_ids(fs, path, inp)
        except JobSpecError:
            raise
        except Exception as exc:  # noqa: BLE001 - any unreadable file is named
            reason = str(exc) if isinstance(exc, BadShard) else f"{type(exc).__name__}: {exc}"
            if inp.on_bad_file == "skip":
                skipped.append({"path": io.unstrip(fs, path), "reason": reason})
                continue
            raise JobSpecError(
                f"{io.unstrip(fs, path)}: not a readable {what} ({reason}); "
                "fix or remove it, or set input.on_bad_file: skip"
            ) from None
        ids.update(found.ids)
        largest = max(largest, len(found.ids))
        if found.row_groups:
            row_groups[path] = found.row_groups
        files.append(_info(fs, path))
    if not files:
        raise JobSpecError(f"input.path: no readable {what}s under {inp.path} ({len(skipped)} skipped)")
    return _counted(inp, files, skipped, ids, sum(ids.values()), largest, row_groups)


def _counted(
    inp: InputSpec, files: list[InputFile], skipped: list[dict[str, str]], ids: Counter[Any], total: int, largest: int,
    row_groups: dict[str, tuple[int, ...]] | None = None,
) -> InputScan:
    """The scan, after the duplicate-id check (``input.duplicate_ids``)."""
    duplicates = {i: n for i, n in ids.items() if n > 1}
    if duplicates and inp.duplicate_ids == "refuse":
        examples = ", ".join(f"{i!r} ({n} rows)" for i, n in list(duplicates.items())[:5])
        raise JobSpecError(
            f"input: {len(duplicates)} ids are held by more than one row, e.g. {examples}; every row needs its own "
            f"'{inp.id_column}' (or set input.duplicate_ids: error to make such rows error rows)"
        )
    rows = total if inp.limit is None else min(inp.limit, total)
    return InputScan(files, rows, skipped, duplicates, largest, row_groups or {})
