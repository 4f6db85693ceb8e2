"""The input, checked before anything runs: every file listed with its size and mtime, every
Parquet shard opened (a corrupt one is named, or skipped with ``input.on_bad_file: skip``),
the id column found in each, the rows counted, and duplicate ids caught. No Ray here."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pyarrow.parquet as pq

from . import io
from .spec import InputSpec, JobSpecError


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

    @property
    def paths(self) -> list[str]:
        return [f.path for f in self.files]


def _info(fs: Any, path: str) -> InputFile:
    info = fs.info(path)
    mtime = info.get("mtime") or info.get("LastModified") or info.get("last_modified") or info.get("created") or ""
    return InputFile(path, int(info.get("size") or 0), str(mtime))


def scan_input(inp: InputSpec) -> InputScan:
    """List and check the input; raise :class:`JobSpecError` naming the file and the cause."""
    fmt = inp.file_format
    try:
        fs, paths = io.list_files(inp.path, fmt.extensions, inp.storage_options)
    except (FileNotFoundError, OSError) as exc:
        raise JobSpecError(f"input.path: cannot list {inp.path}: {exc}") from None
    if fmt.file_column is not None:  # one row per file, the path is the id
        files = [_info(fs, p) for p in paths]
        rows = len(files) if inp.limit is None else min(inp.limit, len(files))
        return InputScan(files, rows)
    files, skipped, ids, largest = [], [], Counter[Any](), 1
    for path in paths:
        try:
            with fs.open(path, "rb") as f:
                schema = pq.read_schema(f)
                if inp.id_column not in schema.names:
                    raise JobSpecError(
                        f"{io.unstrip(fs, path)}: no id column '{inp.id_column}' (columns: {', '.join(schema.names)}); "
                        "set input.id_column"
                    )
                f.seek(0)
                column = pq.read_table(f, columns=[inp.id_column]).column(inp.id_column)
        except JobSpecError:
            raise
        except Exception as exc:  # noqa: BLE001 - any unreadable shard is named
            reason = f"{type(exc).__name__}: {exc}"
            if inp.on_bad_file == "skip":
                skipped.append({"path": io.unstrip(fs, path), "reason": reason})
                continue
            raise JobSpecError(
                f"{io.unstrip(fs, path)}: not a readable Parquet file ({reason}); "
                "fix or remove it, or set input.on_bad_file: skip"
            ) from None
        if column.null_count:
            raise JobSpecError(f"{io.unstrip(fs, path)}: {column.null_count} rows have a null id ('{inp.id_column}')")
        ids.update(column.to_pylist())
        largest = max(largest, len(column))
        files.append(_info(fs, path))
    if not files:
        raise JobSpecError(f"input.path: no readable Parquet files under {inp.path} ({len(skipped)} skipped)")
    total = sum(ids.values())
    duplicates = {i: n for i, n in ids.items() if n > 1}
    if duplicates and inp.duplicate_ids == "refuse":
        examples = ", ".join(f"{i!r} ({n} rows)" for i, n in list(duplicates.items())[:5])
        raise JobSpecError(
            f"input: {len(duplicates)} ids are held by more than one row, e.g. {examples}; every row needs its own "
            f"'{inp.id_column}' (or set input.duplicate_ids: error to make such rows error rows)"
        )
    rows = total if inp.limit is None else min(inp.limit, total)
    return InputScan(files, rows, skipped, duplicates, largest)
