"""Storage: fsspec filesystems for any URL, input discovery, atomic Parquet writes.

No Ray here: the executor calls these from its read/write tasks.
"""

from __future__ import annotations

import json
import posixpath
import uuid
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow.fs import FSSpecHandler, PyFileSystem

ROWS, ERRORS, METRICS = "rows", "errors", "metrics"
SUMMARY = "summary.json"


def filesystem(url: str, storage_options: dict[str, Any] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """(fsspec filesystem, path inside it) for a local path or any fsspec URL."""
    fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    return fs, path


def arrow_filesystem(fs: fsspec.AbstractFileSystem) -> PyFileSystem:
    return PyFileSystem(FSSpecHandler(fs))


def _is_glob(path: str) -> bool:
    return any(ch in path for ch in "*?[")


PARQUET = (".parquet",)


def list_files(
    paths: str | list[str], extensions: tuple[str, ...], storage_options: dict[str, Any] | None = None
) -> tuple[fsspec.AbstractFileSystem, list[str]]:
    """Expand files, folders (recursively) and globs to a sorted list of the data files with
    one of ``extensions`` (a file named directly is taken whatever its extension).

    Files whose names start with '.' or '_' (temporary files, markers) are skipped."""
    items = [paths] if isinstance(paths, str) else list(paths)
    if not items:
        raise FileNotFoundError("input.path is empty")
    fs, _ = filesystem(items[0], storage_options)
    exts = extensions
    found: list[str] = []
    for item in items:
        _, path = filesystem(item, storage_options)
        if _is_glob(path):
            matches = sorted(fs.glob(path))
            if not matches:
                raise FileNotFoundError(f"input.path: no files match {item}")
            candidates = [m for m in matches if fs.isfile(m)]
            candidates += [f for m in matches if fs.isdir(m) for f in fs.find(m)]
        elif fs.isdir(path):
            candidates = fs.find(path)
        elif fs.isfile(path):
            candidates = [path]
        else:
            raise FileNotFoundError(f"input.path: {item} does not exist")
        for c in candidates:
            base = posixpath.basename(c)
            if base.startswith((".", "_")):
                continue
            if c == path or base.lower().endswith(exts):
                found.append(c)
    found = sorted(dict.fromkeys(found))
    if not found:
        raise FileNotFoundError(f"input.path: no files ({', '.join(exts)}) under {paths}")
    return fs, found


def unstrip(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """A full URL for a path inside ``fs`` (``bucket/key`` -> ``s3://bucket/key``)."""
    return fs.unstrip_protocol(path) if fs.protocol not in ("file", ("file", "local")) else path


def probe_columns(paths: str | list[str], storage_options: dict[str, Any] | None = None) -> list[str]:
    """Column names of the first Parquet file of the input."""
    fs, files = list_files(paths, PARQUET, storage_options)
    with fs.open(files[0], "rb") as f:
        return list(pq.read_schema(f).names)


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


def write_parquet_atomic(table: pa.Table, fs: fsspec.AbstractFileSystem, directory: str, prefix: str) -> str:
    """Write ``table`` to ``directory/prefix-<uuid>.parquet`` so that readers never see a
    partial file: local files are renamed into place, object-store uploads appear whole."""
    fs.makedirs(directory, exist_ok=True)
    name = f"{prefix}-{uuid.uuid4().hex[:12]}.parquet"
    final = posixpath.join(directory, name)
    target = posixpath.join(directory, f".{name}.inprogress") if is_local(fs) else final
    with fs.open(target, "wb") as f:
        pq.write_table(table, f)
    if target != final:
        fs.mv(target, final)
    return final


def output_exists(path: str, storage_options: dict[str, Any] | None = None) -> bool:
    fs, root = filesystem(path, storage_options)
    return any(fs.exists(posixpath.join(root, d)) for d in (ROWS, ERRORS))


def read_done_ids(path: str, id_column: str, storage_options: dict[str, Any] | None = None) -> set[Any]:
    """Ids already written under ``<output>/rows`` and ``<output>/errors`` (for resume)."""
    fs, root = filesystem(path, storage_options)
    done: set[Any] = set()
    for sub in (ROWS, ERRORS):
        d = posixpath.join(root, sub)
        if not fs.exists(d):
            continue
        for f in sorted(fs.find(d)):
            if posixpath.basename(f).startswith((".", "_")) or not f.endswith(".parquet"):
                continue
            with fs.open(f, "rb") as fh:
                done.update(pq.read_table(fh, columns=[id_column]).column(id_column).to_pylist())
    return done


def clear_output(path: str, storage_options: dict[str, Any] | None = None) -> None:
    fs, root = filesystem(path, storage_options)
    for sub in (ROWS, ERRORS, METRICS, SUMMARY):
        p = posixpath.join(root, sub)
        if fs.exists(p):
            fs.rm(p, recursive=True)


def write_json(path: str, name: str, payload: dict[str, Any], storage_options: dict[str, Any] | None = None) -> str:
    fs, root = filesystem(path, storage_options)
    fs.makedirs(root, exist_ok=True)
    target = posixpath.join(root, name)
    with fs.open(target, "w") as f:
        json.dump(payload, f, indent=2, default=str)
    return unstrip(fs, target)


