"""Arrow <-> Python/numpy conversion for operator batches, columnar where it matters.

A batch column reaches an operator as a :data:`Column`: a ``numpy`` array with one row per
leading index (fixed-shape tensors, fixed-size vectors: no per-row objects), or a list of
Python values (``str``, ``bytes``, numbers, lists, per-row ``numpy`` arrays of varying
shape). In Arrow:

* an ``(N, d)`` array is ``fixed_size_list<dtype>[d]`` (embeddings);
* an ``(N, ...)`` array of 3 or more dimensions is Arrow's canonical fixed-shape tensor
  (preprocessed ``pixel_values``), built and read without copying row by row;
* per-row 1-D arrays of varying length are ``list<dtype>`` (waveforms);
* per-row arrays of 2 or more dimensions and varying shape (decoded pixels) are a *tensor*
  struct ``{shape: list<int32>, dtype: string, data: binary}``.

Tensor columns are transient: they travel between steps and are never written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

Column = list[Any] | np.ndarray
"""One batch column: per-row Python values, or an array whose first axis is the row."""

TENSOR_FIELDS = ("shape", "dtype", "data")
TENSOR_TYPE = pa.struct(
    [("shape", pa.list_(pa.int32())), ("dtype", pa.string()), ("data", pa.binary())]
)


def is_tensor_type(t: pa.DataType) -> bool:
    """A tensor column (fixed-shape or per-row shaped): transient, never written."""
    if isinstance(t, pa.FixedShapeTensorType):
        return True
    return pa.types.is_struct(t) and tuple(t.field(i).name for i in range(t.num_fields)) == TENSOR_FIELDS


def _combined(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def _fixed_values(arr: pa.FixedSizeListArray) -> np.ndarray:
    """The (len, size) values of a fixed-size list array, nulls included (their slots hold
    whatever was stored), without a per-row copy."""
    size = arr.type.list_size
    flat = arr.values.slice(arr.offset * size, len(arr) * size)
    return flat.to_numpy(zero_copy_only=False).reshape(len(arr), size)


def _numeric_list_to_numpy(arr: pa.Array) -> list[np.ndarray | None]:
    """list<numeric> -> one numpy view per row, without going through Python floats."""
    if pa.types.is_fixed_size_list(arr.type):
        values = _fixed_values(arr)
        valid = arr.is_valid().to_numpy(zero_copy_only=False)
        return [values[i] if valid[i] else None for i in range(len(arr))]
    offsets = arr.offsets.to_numpy()
    values = arr.values.to_numpy(zero_copy_only=False)
    valid = arr.is_valid().to_numpy(zero_copy_only=False)
    return [values[offsets[i] : offsets[i + 1]] if valid[i] else None for i in range(len(arr))]


def _tensors_to_numpy(arr: pa.StructArray) -> list[np.ndarray | None]:
    """Tensor structs -> per-row numpy views of the data buffer (no Python dict per row)."""
    shapes = arr.field("shape").to_pylist()
    dtypes = arr.field("dtype").to_pylist()
    data = arr.field("data")
    valid = arr.is_valid().to_numpy(zero_copy_only=False)
    offsets = np.frombuffer(data.buffers()[1], dtype=np.int32)[data.offset : data.offset + len(data) + 1]
    buf = data.buffers()[2]
    out: list[np.ndarray | None] = []
    for i in range(len(arr)):
        if not valid[i]:
            out.append(None)
            continue
        dtype = np.dtype(dtypes[i])
        start, stop = int(offsets[i]), int(offsets[i + 1])
        out.append(np.frombuffer(buf, dtype=dtype, count=(stop - start) // dtype.itemsize, offset=start).reshape(shapes[i]))
    return out


def column_to_python(col: pa.Array | pa.ChunkedArray) -> Column:
    """One Arrow column -> a :data:`Column` (numpy for tensors and numeric vectors)."""
    t = col.type
    if isinstance(t, pa.FixedShapeTensorType):
        storage = _combined(col).storage
        return _fixed_values(storage).reshape(len(storage), *t.shape)
    if is_tensor_type(t):
        return _tensors_to_numpy(_combined(col))
    is_list = pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)
    if is_list and (pa.types.is_floating(t.value_type) or pa.types.is_integer(t.value_type)):
        arr = _combined(col)
        if pa.types.is_fixed_size_list(t) and arr.null_count == 0:
            return _fixed_values(arr)
        return _numeric_list_to_numpy(arr)
    return col.to_pylist()


def _array_to_arrow(values: Sequence[Any]) -> pa.Array:
    """Rows holding numpy arrays (or None) -> list<dtype> (1-D) or tensor structs (N-D)."""
    first = next(v for v in values if v is not None)
    if first.ndim == 1:
        dtype = first.dtype
        sizes = np.array([0 if v is None else len(v) for v in values], dtype=np.int64)
        offsets = np.zeros(len(values) + 1, dtype=np.int32 if sizes.sum() < 2**31 else np.int64)
        np.cumsum(sizes, out=offsets[1:])
        flat = (
            np.concatenate([v for v in values if v is not None]).astype(dtype, copy=False)
            if sizes.sum()
            else np.zeros(0, dtype=dtype)
        )
        mask = pa.array([v is None for v in values])
        list_cls = pa.ListArray if offsets.dtype == np.int32 else pa.LargeListArray
        return list_cls.from_arrays(pa.array(offsets), pa.array(flat), mask=mask)
    mask = pa.array([v is None for v in values])
    shapes = pa.array([None if v is None else list(v.shape) for v in values], type=pa.list_(pa.int32()))
    dtypes = pa.array([None if v is None else v.dtype.str for v in values], type=pa.string())
    data = pa.array([None if v is None else np.ascontiguousarray(v).tobytes() for v in values], type=pa.binary())
    return pa.StructArray.from_arrays([shapes, dtypes, data], fields=list(TENSOR_TYPE), mask=mask)


def batch_to_arrow(values: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    """An ``(N, ...)`` array -> ``fixed_size_list`` (2-D) or a fixed-shape tensor (3-D and
    more); rows where ``mask`` is True are null."""
    values = np.ascontiguousarray(values)
    row = int(np.prod(values.shape[1:]))
    storage = pa.FixedSizeListArray.from_arrays(
        pa.array(values.reshape(-1)), row, mask=None if mask is None else pa.array(mask)
    )
    if values.ndim == 2:
        return storage
    tensor_type = pa.fixed_shape_tensor(pa.from_numpy_dtype(values.dtype), list(values.shape[1:]))
    return pa.ExtensionArray.from_storage(tensor_type, storage)


def to_arrow(values: Column, type: pa.DataType | None = None) -> pa.Array:
    """A :data:`Column` (None for a missing row) -> an Arrow array."""
    if isinstance(values, np.ndarray):
        return batch_to_arrow(values) if values.ndim >= 2 else pa.array(values, type=type)
    if type is None and any(isinstance(v, np.ndarray) for v in values):
        return _array_to_arrow(values)
    return pa.array(list(values), type=type)


def take(column: Column, rows: Sequence[int]) -> Column:
    """The ``rows`` of a column, in that order (an array stays an array)."""
    if isinstance(column, np.ndarray):
        if len(rows) == len(column) and all(r == i for i, r in enumerate(rows)):
            return column
        return column[np.asarray(rows, dtype=np.int64)]
    return [column[i] for i in rows]


def table_to_columns(table: pa.Table, names: Sequence[str]) -> dict[str, Column]:
    return {name: column_to_python(table.column(name)) for name in names}


def scatter(values: Sequence[Any], positions: Sequence[int], length: int) -> list[Any]:
    """Place ``values`` at ``positions`` of a list of ``length`` Nones."""
    out: list[Any] = [None] * length
    for pos, value in zip(positions, values, strict=True):
        out[pos] = value
    return out
