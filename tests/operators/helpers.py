"""Helpers for calling operators directly (no Ray) in tests."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from mmbatch.operators.base import OPERATORS, Operator


def make_op(name: str, /, **config: Any) -> Operator:
    cls = OPERATORS.get(name)
    op = cls(cls.Config(**config))
    op.setup()
    return op


def run_ops(table: pa.Table, *ops: Operator) -> pa.Table:
    for op in ops:
        table = op(table)
    return table
