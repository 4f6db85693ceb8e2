"""Helpers for calling operators directly (no Ray) in tests."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from mmbatch.operators.base import Operator
from mmbatch.operators.registry import get_operator


def make_op(name: str, /, **config: Any) -> Operator:
    cls = get_operator(name)
    op = cls(cls.Config(**config))
    op.setup()
    return op


def run_ops(table: pa.Table, *ops: Operator) -> pa.Table:
    for op in ops:
        table = op(table)
    return table
