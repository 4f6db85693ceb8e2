"""Storage: fsspec filesystems for any URL, input discovery, atomic Parquet writes.

No Ray here: the executor calls these from its read/write tasks.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
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


_BRACE = re.compile(r"\{([^{}]*)\}")


def expand_braces(path: str) -> list[str]:
    """WebDataset-style brace expansion: ``shard-{000..002}.tar`` -> ``shard-000.tar``,
    ``shard-001.tar``, ``shard-002.tar`` (the width of the first bound kept), and
    ``{a,b}`` -> ``a``, ``b``; several braces multiply. A path without braces is itself."""
    m = _BRACE.search(path)
    if m is None:
        return [path]
    body, head, tail = m.group(1), path[: m.start()], path[m.end():]
    if ".." in body:
        lo, hi = body.split("..", 1)
        if not (lo.isdigit() and hi.isdigit()):
            raise ValueError(f"{path}: brace range {{{body}}} is not {{<number>..<number>}}")
        width = len(lo) if lo.startswith("0") else 0
        step = 1 if int(hi) >= int(lo) else -1
        options = [str(i).zfill(width) for i in range(int(lo), int(hi) + step, step)]
    else:
        options = body.split(",")
    return [p for o in options for p in expand_braces(head + o + tail)]


PARQUET = (".parquet",)


def list_files(
    paths: str | list[str], extensions: tuple[str, ...], storage_options: dict[str, Any] | None = None
) -> tuple[fsspec.AbstractFileSystem, list[str]]:
    """Expand brace ranges, files, folders (recursively) and globs to a sorted list of the
    data files with one of ``extensions`` (a file named directly is taken whatever its
    extension; each file a brace range names must exist).

    Files whose names start with '.' or '_' (temporary files, markers) are skipped."""
    items = [p for item in ([paths] if isinstance(paths, str) else list(paths)) for p in expand_braces(item)]
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


def unit_name(ids: pa.Array | pa.ChunkedArray) -> str:
    """``part-<hash>``: the name of the output files of one unit of work, from the ids it
    holds (in any order). A retried write of the same rows gets the same name and replaces
    its files instead of adding to them."""
    digest = hashlib.sha256("\0".join(sorted(map(str, ids.to_pylist()))).encode()).hexdigest()
    return f"part-{digest[:24]}"


def write_parquet_atomic(table: pa.Table, fs: fsspec.AbstractFileSystem, directory: str, name: str) -> str:
    """Write ``table`` as ``directory/<name>.parquet``, replacing a file of that name, so that
    readers never see a partial file: local files are written aside and renamed into place,
    object-store uploads appear whole."""
    fs.makedirs(directory, exist_ok=True)
    final = posixpath.join(directory, f"{name}.parquet")
    target = posixpath.join(directory, f".{name}.{uuid.uuid4().hex[:8]}.inprogress") if is_local(fs) else final
    with fs.open(target, "wb") as f:
        pq.write_table(table, f)
    if target != final:
        os.replace(target, final)
    return final


def output_exists(path: str, storage_options: dict[str, Any] | None = None) -> bool:
    fs, root = filesystem(path, storage_options)
    return any(fs.exists(posixpath.join(root, d)) for d in (ROWS, ERRORS))


def output_files(path: str, sub: str, storage_options: dict[str, Any] | None = None) -> list[str]:
    """The committed Parquet files under ``<output>/<sub>`` (not in-progress ones)."""
    fs, root = filesystem(path, storage_options)
    d = posixpath.join(root, sub)
    if not fs.exists(d):
        return []
    return [f for f in sorted(fs.find(d))
            if f.endswith(".parquet") and not posixpath.basename(f).startswith((".", "_"))]


def read_ids(path: str, id_column: str, sub: str, storage_options: dict[str, Any] | None = None) -> list[Any]:
    """Every id under ``<output>/<sub>`` (``rows`` or ``errors``), one per written row."""
    fs, _ = filesystem(path, storage_options)
    ids: list[Any] = []
    for f in output_files(path, sub, storage_options):
        with fs.open(f, "rb") as fh:
            ids += pq.read_table(fh, columns=[id_column]).column(id_column).to_pylist()
    return ids


def remove_files(path: str, sub: str, storage_options: dict[str, Any] | None = None) -> int:
    """Delete the committed files under ``<output>/<sub>``; returns how many."""
    fs, _ = filesystem(path, storage_options)
    files = output_files(path, sub, storage_options)
    for f in files:
        fs.rm(f)
    return len(files)


def read_done_ids(path: str, id_column: str, storage_options: dict[str, Any] | None = None) -> set[Any]:
    """Ids already written under ``<output>/rows`` and ``<output>/errors`` (for resume)."""
    return {i for sub in (ROWS, ERRORS) for i in read_ids(path, id_column, sub, storage_options)}


def written_counts(path: str, id_column: str, storage_options: dict[str, Any] | None = None) -> tuple[int, int, list[Any]]:
    """(rows, error rows, ids written more than once) of an output, read back from its files."""
    from collections import Counter

    rows = read_ids(path, id_column, ROWS, storage_options)
    errors = read_ids(path, id_column, ERRORS, storage_options)
    twice = [i for i, n in Counter(rows + errors).items() if n > 1]
    return len(rows), len(errors), twice


def clear_output(path: str, storage_options: dict[str, Any] | None = None) -> None:
    fs, root = filesystem(path, storage_options)
    for sub in (ROWS, ERRORS, METRICS, SUMMARY, "manifest.json"):
        p = posixpath.join(root, sub)
        if fs.exists(p):
            fs.rm(p, recursive=True)


def write_json(path: str, name: str, payload: dict[str, Any], storage_options: dict[str, Any] | None = None) -> str:
    """``<path>/<name>`` as indented JSON, replaced whole (never seen half-written)."""
    fs, root = filesystem(path, storage_options)
    fs.makedirs(root, exist_ok=True)
    final = posixpath.join(root, name)
    target = posixpath.join(root, f".{name}.{uuid.uuid4().hex[:8]}.inprogress") if is_local(fs) else final
    with fs.open(target, "w") as f:
        json.dump(payload, f, indent=2, default=str)
    if target != final:
        os.replace(target, final)
    return unstrip(fs, final)


def read_json(path: str, name: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any] | None:
    fs, root = filesystem(path, storage_options)
    target = posixpath.join(root, name)
    if not fs.exists(target):
        return None
    with fs.open(target, "r") as f:
        data: dict[str, Any] = json.load(f)
    return data


def probe_writable(path: str, storage_options: dict[str, Any] | None = None) -> None:
    """Write and remove a small file under ``path``; raise ``OSError`` naming the path."""
    fs, root = filesystem(path, storage_options)
    probe = posixpath.join(root, f".mmbatch-probe-{uuid.uuid4().hex[:8]}")
    try:
        fs.makedirs(root, exist_ok=True)
        with fs.open(probe, "wb") as f:
            f.write(b"ok")
        fs.rm(probe)
    except Exception as exc:  # noqa: BLE001 - any failure means: cannot write the output here
        raise OSError(f"output {path} is not writable: {type(exc).__name__}: {exc}") from None


