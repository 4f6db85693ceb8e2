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


def prepare_stage(name: str, /, **config: Any) -> Operator:
    """The step's prepare stage as the engine runs it in a CPU task: built apart from the
    model worker and set up (processor only, no model)."""
    cls = OPERATORS.get(name)
    stage = cls(cls.Config(**config)).preparer()
    assert stage is not None
    stage.setup()
    return stage


def run_ops(table: pa.Table, *ops: Operator) -> pa.Table:
    for op in ops:
        table = op(table)
    return table


def fits_on_device(op: Operator, method: str, rows: int) -> list[int]:
    """Make ``op.model.<method>`` run out of device memory (a simulated CUDA OOM) on more
    than ``rows`` rows of ``pixel_values``; returns the list it records each call's rows in."""
    import torch

    model: Any = op.model  # a model step
    real, calls = getattr(model, method), []

    def limited(*args: Any, **kwargs: Any) -> Any:
        calls.append(len(kwargs["pixel_values"] if "pixel_values" in kwargs else args[0]))
        if calls[-1] > rows:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(*args, **kwargs)

    setattr(model, method, limited)
    return calls
