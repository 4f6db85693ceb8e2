"""JSON Lines and CSV manifests without Ray: a table of rows naming their media by path or
URL (``{"id": "a1", "audio": "clips/a1.flac", "reference": "..."}``). Relative paths in
``input.path_column`` are resolved against the folder of the manifest that names them."""

from __future__ import annotations

import posixpath
from typing import IO, Any

import pyarrow as pa


def resolve_paths(values: list[Any], manifest: str) -> list[str | None]:
    """Each relative path joined to the manifest's folder; URLs, absolute paths and nulls as
    they are."""
    base = posixpath.dirname(manifest)
    out: list[str | None] = []
    for v in values:
        if v is None:
            out.append(None)
            continue
        s = str(v)
        out.append(s if "://" in s or s.startswith("/") or not base else posixpath.join(base, s))
    return out


def read_path_list(f: IO[bytes], fmt: str) -> pa.Table:
    """A whole manifest file as Arrow, parsed as Ray Data's ``read_json`` (pyarrow: newline-delimited) and
    ``read_csv`` parse it (pyarrow's readers)."""
    if fmt == "csv":
        import pyarrow.csv as pcsv

        return pcsv.read_csv(f)
    import pyarrow.json as pjson

    return pjson.read_json(f)


def check_path_column(table: pa.Table, column: str, where: str) -> None:
    """``input.path_column`` is a column of strings; ``ValueError`` naming the file if not."""
    if column not in table.column_names:
        raise ValueError(f"{where}: no path column '{column}' (columns: {', '.join(table.column_names)}); "
                         "set input.path_column")
    t = table.schema.field(column).type
    if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)):
        raise ValueError(f"{where}: path column '{column}' holds {t}, not paths or URLs")
