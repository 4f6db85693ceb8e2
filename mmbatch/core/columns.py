"""Arrow <-> Python conversion for operator batches.

Operators see plain Python values: ``str``, ``bytes``, numbers, lists, dicts and
``numpy`` arrays. Arrow holds them as flat, typed columns:

* 1-D numeric arrays (embeddings, waveforms) become ``list<float32>``-style columns;
* arrays of two or more dimensions (decoded pixels) become a *tensor* struct
  ``{shape: list<int32>, dtype: string, data: binary}``. Such columns are transient
  (they only travel between steps) and are dropped before rows are written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

TENSOR_FIELDS = ("shape", "dtype", "data")
TENSOR_TYPE = pa.struct(
    [("shape", pa.list_(pa.int32())), ("dtype", pa.string()), ("data", pa.binary())]
)


def is_tensor_type(t: pa.DataType) -> bool:
    return pa.types.is_struct(t) and tuple(t.field(i).name for i in range(t.num_fields)) == TENSOR_FIELDS


def _numeric_list_to_numpy(arr: pa.Array) -> list[np.ndarray | None]:
    """list<numeric> -> one numpy view per row, without going through Python floats."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_fixed_size_list(arr.type):
        arr = arr.cast(pa.list_(arr.type.value_type))
    offsets = arr.offsets.to_numpy()
    values = arr.values.to_numpy(zero_copy_only=False)
    valid = arr.is_valid().to_numpy(zero_copy_only=False)
    return [
        values[offsets[i] : offsets[i + 1]] if valid[i] else None for i in range(len(arr))
    ]


def _tensors_to_numpy(arr: pa.Array) -> list[np.ndarray | None]:
    out: list[np.ndarray | None] = []
    for item in arr.to_pylist():
        if item is None:
            out.append(None)
        else:
            data = np.frombuffer(bytearray(item["data"]), dtype=np.dtype(item["dtype"]))
            out.append(data.reshape(item["shape"]))
    return out


def column_to_python(col: pa.Array | pa.ChunkedArray) -> list[Any]:
    """One Arrow column -> a list of Python values (numpy arrays for numeric lists/tensors)."""
    t = col.type
    if is_tensor_type(t):
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        return _tensors_to_numpy(col)
    if (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)) and (
        pa.types.is_floating(t.value_type) or pa.types.is_integer(t.value_type)
    ):
        return _numeric_list_to_numpy(col)
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
    rows = [
        None
        if v is None
        else {"shape": list(v.shape), "dtype": v.dtype.str, "data": np.ascontiguousarray(v).tobytes()}
        for v in values
    ]
    return pa.array(rows, type=TENSOR_TYPE)


def to_arrow(values: Sequence[Any] | np.ndarray, type: pa.DataType | None = None) -> pa.Array:
    """A list of Python values (one per row, None for missing) -> an Arrow array."""
    if isinstance(values, np.ndarray) and values.ndim >= 2:
        values = list(values)
    if isinstance(values, np.ndarray):
        return pa.array(values, type=type)
    if type is None and any(isinstance(v, np.ndarray) for v in values):
        return _array_to_arrow(values)
    return pa.array(list(values), type=type)


def table_to_columns(table: pa.Table, names: Sequence[str]) -> dict[str, list[Any]]:
    return {name: column_to_python(table.column(name)) for name in names}


def scatter(values: Sequence[Any], positions: Sequence[int], length: int) -> list[Any]:
    """Place ``values`` at ``positions`` of a list of ``length`` Nones."""
    out: list[Any] = [None] * length
    for pos, value in zip(positions, values, strict=True):
        out[pos] = value
    return out
