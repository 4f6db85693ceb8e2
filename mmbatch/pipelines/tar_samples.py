"""WebDataset tar shards without Ray: members grouped into samples by key, as WebDataset
does (``00001.jpg`` + ``00001.txt`` + ``00001.json`` -> one sample, key ``00001``), and
the samples as Arrow rows. The scan (:mod:`mmbatch.pipelines.inputs`) and the Ray reader
(:mod:`mmbatch.pipelines.formats`) share :func:`group_members`, so both see the same
samples and ids.

A sample's key is the member's path up to the first ``.`` of its file name; the rest of
the name (``jpg``, ``seg.png``) is its field. Fields become columns: ``txt``/``text``/``cls``
as text, ``json`` parsed into ``json_<field>`` columns (nested values as JSON text), any
other extension as bytes. A member without a key, a field present twice in one sample,
a member that is not UTF-8 text or valid JSON makes that sample an error row; a truncated
or corrupt tar is found by :func:`scan_shard` before anything runs."""

from __future__ import annotations

import json
import re
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import pyarrow as pa

TEXT_FIELDS = frozenset({"txt", "text", "cls"})
JSON_FIELD = "json"
JSON_PREFIX = "json_"
SHARD_COLUMN = "shard"
ERROR = "error"
_KEY = re.compile(r"^((?:.*/|)[^./][^.]*)\.([^/]*)$")  # WebDataset's rule, as in Ray's reader


def split_key(name: str) -> tuple[str, str] | None:
    """(key, field) of a member name (``a/00001.seg.png`` -> ``a/00001``, ``seg.png``), or
    None for a name without an extension (or a hidden file): it belongs to no sample."""
    m = _KEY.match(name)
    return (m.group(1), m.group(2)) if m else None


@dataclass
class Sample:
    key: str
    fields: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def group_members(members: Iterable[tuple[str, Any]], shard: str) -> Iterator[Sample]:
    """Consecutive members sharing a key -> one :class:`Sample` each (``payload`` is the
    member's bytes, or anything when only the keys are wanted). A member without a key is
    an error sample of its own (key: its name); a field twice in a sample makes the sample
    an error. A key that comes back later in the shard is a second sample of that key: the
    input's duplicate-id check names it."""
    current: Sample | None = None
    for name, payload in members:
        parts = split_key(name)
        if parts is None:
            if current is not None:
                yield current
                current = None
            yield Sample(name, {}, f"input: {shard}: tar member '{name}' has no extension, so no "
                                   "WebDataset key (members are named <key>.<field>, e.g. 00001.jpg)")
            continue
        key, ext = parts
        if current is not None and current.key != key:
            yield current
            current = None
        if current is None:
            current = Sample(key)
        if ext in current.fields:
            current.error = current.error or f"input: {shard}: sample '{key}' holds member '{name}' twice"
            continue
        current.fields[ext] = payload
    if current is not None:
        yield current


class BadShard(ValueError):
    """A tar shard that cannot be read to its end (truncated, corrupt, not a tar)."""


def _end_marker_ok(f: IO[bytes], offset: int) -> bool:
    f.seek(offset)
    block = f.read(512)
    return len(block) == 512 and not block.strip(b"\0")


def scan_shard(f: IO[bytes], shard: str) -> list[Sample]:
    """The samples of a seekable tar (keys and errors; payloads are member sizes), reading
    only the member headers. Raises :class:`BadShard` for a tar that is truncated (a member
    or the end-of-archive marker missing) or corrupt."""
    try:
        tar = tarfile.open(fileobj=f, mode="r:")  # noqa: SIM115 - closed below
    except tarfile.TarError as exc:
        raise BadShard(f"not a tar file ({type(exc).__name__}: {exc})") from None
    size = f.seek(0, 2)
    members: list[tuple[str, Any]] = []
    try:
        for info in tar:
            if info.offset_data + info.size > size:
                raise BadShard(f"truncated tar: member '{info.name}' ends at byte {info.offset_data + info.size}, "
                               f"past the end of the file ({size} bytes)")
            if info.isreg():
                members.append((info.name, info.size))
    except tarfile.TarError as exc:
        what = "truncated" if "end of data" in str(exc) else "corrupt"
        raise BadShard(f"{what} tar after {len(members)} members ({type(exc).__name__}: {exc})") from None
    if not _end_marker_ok(f, tar.offset):
        what = "truncated" if tar.offset + 512 > size else "corrupt"
        raise BadShard(f"{what} tar: no valid member header or end-of-archive marker at byte {tar.offset} "
                       f"(after {len(members)} members, file is {size} bytes)")
    return list(group_members(members, shard))


def stream_members(f: IO[bytes], shard: str, errors: list[str]) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of each regular member of a tar read as a stream, never extracted to
    disk. A read that fails (a shard changed since the scan) ends the stream and appends
    the cause to ``errors``."""
    try:
        with tarfile.open(fileobj=f, mode="r|*") as tar:
            for info in tar:
                if not info.isreg():
                    continue
                member = tar.extractfile(info)
                assert member is not None
                yield info.name, member.read()
    except (tarfile.TarError, EOFError, OSError) as exc:
        errors.append(f"input: {shard}: unreadable tar ({type(exc).__name__}: {exc})")


def _fields(sample: Sample, shard: str) -> dict[str, Any]:
    """A sample's columns: text fields decoded, ``json`` parsed and flattened."""
    row: dict[str, Any] = {}
    for ext, data in sample.fields.items():
        if ext in TEXT_FIELDS:
            try:
                row[ext] = data.decode("utf-8").strip()
            except UnicodeDecodeError as exc:
                raise ValueError(f"input: {shard}: {sample.key}.{ext} is not UTF-8 text ({exc})") from None
        elif ext == JSON_FIELD:
            try:
                parsed = json.loads(data)
            except ValueError as exc:
                raise ValueError(f"input: {shard}: {sample.key}.json is not valid JSON ({exc})") from None
            if not isinstance(parsed, dict):
                raise ValueError(f"input: {shard}: {sample.key}.json holds a {type(parsed).__name__}, not an object")
            for k, v in parsed.items():
                row[JSON_PREFIX + k] = json.dumps(v) if isinstance(v, dict | list) else v
        else:
            row[ext] = data
    return row


def samples_table(samples: list[Sample], shard: str, id_column: str) -> pa.Table:
    """Samples -> one Arrow table: ``id_column`` (the key), ``shard``, one column per field,
    and ``error`` (a sample that cannot be read is an error row, its fields left null)."""
    rows: list[dict[str, Any]] = []
    for s in samples:
        row: dict[str, Any] = {}
        error = s.error
        if error is None:
            try:
                row = _fields(s, shard)
            except ValueError as exc:
                error = str(exc)
        rows.append(row | {id_column: s.key, SHARD_COLUMN: shard, ERROR: error})
    names = list(dict.fromkeys(n for r in rows for n in r))
    columns = {}
    for n in names:
        values = [r.get(n) for r in rows]
        if n == ERROR:
            columns[n] = pa.array(values, pa.string())
        elif any(isinstance(v, bytes) for v in values):
            columns[n] = pa.array(values, pa.binary())
        else:
            columns[n] = pa.array(values)
    return pa.table(columns)
