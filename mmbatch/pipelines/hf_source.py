"""Hugging Face datasets without Ray: open a split (a ``save_to_disk`` folder, or a dataset
name or local data folder through ``datasets.load_dataset``, which reads the HF cache and
works offline once cached), and cut it into Arrow row ranges in which ``Image`` and
``Audio`` features are plain bytes columns, what ``decode_image``/``decode_audio`` read.

The split is memory-mapped: a range is read where it is processed, never copied through
the driver."""

from __future__ import annotations

import os
from typing import Any

import pyarrow as pa

from mmbatch.core.files import read_bytes

MEDIA_FEATURES = ("Image", "Audio")


def open_split(path: str, config: str | None, split: str) -> Any:
    """The ``datasets.Dataset`` of one split; ``ValueError`` naming what is missing."""
    import datasets

    local = os.path.expanduser(path)
    if os.path.isdir(local) and (
        os.path.exists(os.path.join(local, "dataset_dict.json")) or os.path.exists(os.path.join(local, "state.json"))
    ):
        loaded = datasets.load_from_disk(local)
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise ValueError(f"{path} has no split '{split}' (splits: {', '.join(loaded)}); set input.split")
            return loaded[split]
        return loaded
    try:
        return datasets.load_dataset(path, config, split=split)
    except (FileNotFoundError, ValueError, ConnectionError) as exc:
        raise ValueError(f"cannot load dataset {path} (config {config}, split {split}): {type(exc).__name__}: {exc}") from None


def cache_files(ds: Any) -> list[str]:
    """The Arrow files that hold the split (for the manifest: a changed file is seen)."""
    return [f["filename"] for f in ds.cache_files]


def media_columns(ds: Any) -> list[str]:
    """Columns of ``Image``/``Audio`` features: written as bytes columns."""
    return [name for name, feature in ds.features.items() if type(feature).__name__ in MEDIA_FEATURES]


def index_ids(split: str, start: int, stop: int) -> pa.Array:
    """Ids for a split without an id column: ``<split>:<row index>`` (stable while the
    split's files are unchanged, which the manifest checks)."""
    return pa.array([f"{split}:{i}" for i in range(start, stop)], pa.string())


def _media_bytes(column: pa.ChunkedArray | pa.Array, name: str) -> pa.Array:
    """``struct<bytes, path>`` -> bytes (a row holding only a path: that file's bytes)."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not pa.types.is_struct(arr.type):
        return arr
    data = arr.field("bytes").to_pylist()
    paths = arr.field("path").to_pylist() if arr.type.get_field_index("path") >= 0 else [None] * len(arr)
    out: list[bytes | None] = []
    for valid, b, p in zip(arr.is_valid().to_pylist(), data, paths, strict=True):
        if not valid:
            out.append(None)
        elif b is not None:
            out.append(b)
        elif p:
            try:
                out.append(read_bytes(p))
            except OSError as exc:
                raise ValueError(f"column '{name}': cannot read {p}: {exc}") from None
        else:
            out.append(None)
    return pa.array(out, pa.binary())


def rows_table(ds: Any, start: int, stop: int, split: str, id_column: str, columns: list[str] | None) -> pa.Table:
    """Rows ``start:stop`` of a split as Arrow: media features as bytes, the id column
    added where the split has none."""
    table: pa.Table = ds.with_format("arrow")[start:stop]
    if columns:
        table = table.select([c for c in columns if c in table.column_names])
    for name in media_columns(ds):
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, _media_bytes(table.column(name), name))
    if id_column not in table.column_names:
        table = table.append_column(id_column, index_ids(split, start, stop))
    return table
