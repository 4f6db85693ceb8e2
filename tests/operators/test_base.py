from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from mmbatch.core.columns import column_to_python, to_arrow
from mmbatch.core.resources import Resources
from mmbatch.operators.base import OPERATORS, OpConfig, Operator, OperatorError, register


class _Cfg(OpConfig):
    fail_on: list[int] = []


class Doubler(Operator):
    """Doubles ``x``; raises on values listed in ``fail_on`` (to exercise bisection)."""

    name = "doubler"
    Config = _Cfg

    def __init__(self, *a: Any, **k: Any) -> None:
        super().__init__(*a, **k)
        self.calls = 0

    def inputs(self) -> dict[str, str]:
        return {"x": "int"}

    def outputs(self) -> dict[str, str]:
        return {"y": "2x", "vec": "x repeated"}

    def process(self, batch: dict[str, list[Any]]) -> dict[str, Any]:
        self.calls += 1
        bad = [x for x in batch["x"] if x in self.config.fail_on]
        if bad:
            raise ValueError(f"cannot double {bad[0]}")
        return {"y": [2 * x for x in batch["x"]], "vec": np.array([[x, x] for x in batch["x"]], dtype=np.float32)}


def test_bad_rows_are_isolated_by_bisection_and_others_kept():
    op = Doubler(_Cfg(fail_on=[3, 6]), label="steps[0] doubler")
    table = pa.table({"id": [str(i) for i in range(8)], "x": list(range(8))})
    out = op(table)
    errors = out.column("error").to_pylist()
    assert [i for i, e in enumerate(errors) if e] == [3, 6]
    assert errors[3] == "steps[0] doubler: ValueError: cannot double 3"
    assert out.column("y").to_pylist() == [0, 2, 4, None, 8, 10, None, 14]
    assert out.column("vec").to_pylist()[1] == [1.0, 1.0]
    assert out.column("vec").to_pylist()[3] is None
    assert op.calls < 8 + 8  # bisection, not one call per row plus retries of everything


class TypedDoubler(Doubler):
    def output_types(self) -> dict[str, pa.DataType]:
        return {"y": pa.int64(), "vec": pa.list_(pa.float32())}


def test_declared_output_types_hold_when_a_batch_has_no_good_rows():
    table = pa.table({"x": [3, 3]})
    untyped = Doubler(_Cfg(fail_on=[3]))(table)
    assert untyped.schema.field("y").type == pa.null()  # what a file of all-failed rows would get
    typed = TypedDoubler(_Cfg(fail_on=[3]))(table)
    assert typed.schema.field("y").type == pa.int64()
    assert typed.schema.field("vec").type == pa.list_(pa.float32())
    ok = TypedDoubler(_Cfg())(pa.table({"x": [1]}))
    assert ok.schema.field("y").type == pa.int64() and ok.column("y").to_pylist() == [2]


def test_rows_with_errors_pass_through_untouched_and_null_inputs_fail():
    op = Doubler(_Cfg(), label="d")
    table = pa.table({"x": [1, None, 3], "error": [None, None, "earlier: boom"]})
    out = op(table)
    assert out.column("error").to_pylist() == [None, "d: input column 'x' is null", "earlier: boom"]
    assert out.column("y").to_pylist() == [2, None, None]


def test_columns_round_trip_numpy_and_tensors():
    pixels = [np.arange(24, dtype=np.uint8).reshape(2, 4, 3), None, np.zeros((1, 1, 3), np.uint8)]
    arr = to_arrow(pixels)
    back = column_to_python(arr)
    assert back[1] is None and np.array_equal(back[0], pixels[0]) and back[2].shape == (1, 1, 3)
    vecs = [np.array([1.5, 2.5], np.float32), None]
    arr = to_arrow(vecs)
    assert arr.type == pa.list_(pa.float32())
    back = column_to_python(arr)
    assert back[1] is None and back[0].tolist() == [1.5, 2.5]


def test_registry_rejects_duplicates_and_unknown_names():
    assert {"decode_image", "embed", "classify", "caption"} <= set(OPERATORS.names())
    with pytest.raises(OperatorError, match="registered twice"):
        register("embed")(Doubler)
    with pytest.raises(OperatorError, match="unknown op 'captoin'"):
        OPERATORS.get("captoin")


def test_resources_validation():
    assert Resources(concurrency=(1, 8)).pool == (1, 8)
    assert Resources(concurrency=3).pool == (3, 3)
    with pytest.raises(ValueError):
        Resources(concurrency=(4, 2))
    with pytest.raises(ValueError):
        Resources(gpus=-1)
