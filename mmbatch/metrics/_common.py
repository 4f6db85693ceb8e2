"""Helpers shared by the metrics: column access with clear errors, and an exact,
order-independent mergeable mean of per-row scores."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from mmbatch.core.metric import ID, MetricError

# Floats are summed exactly as integers in units of 2**-1074 (the smallest subnormal double).
_UNIT_EXP = 1074


def exact_units(x: float) -> int:
    """``x`` as an exact integer multiple of 2**-1074."""
    if not math.isfinite(x):
        raise MetricError(f"cannot average a non-finite score ({x})")
    num, den = float(x).as_integer_ratio()  # den is a power of two <= 2**1074
    return num << (_UNIT_EXP - den.bit_length() + 1)


def units_to_float(total: int) -> float:
    """The correctly rounded float of ``total * 2**-1074``."""
    return float(Fraction(total, 1 << _UNIT_EXP))


@dataclass
class ScoreSum:
    """Mergeable state of per-row scores that are averaged over the corpus.

    The sum is exact (integers), so the mean is the correctly rounded sum divided by the
    count whatever the blocking and merge order: 1, 3 or 17 blocks give identical bits.
    ``ids``/``scores`` keep the rows themselves when per-row scores were asked for."""

    total: int = 0
    count: int = 0
    ids: list | None = None
    scores: list[float] | None = None

    @classmethod
    def of(cls, ids: list, scores: list[float], keep_rows: bool) -> ScoreSum:
        scores = [float(s) for s in scores]
        if keep_rows and len(ids) != len(scores):
            raise MetricError(f"{len(ids)} ids for {len(scores)} scores")
        return cls(
            total=sum(exact_units(s) for s in scores),
            count=len(scores),
            ids=list(ids) if keep_rows else None,
            scores=scores if keep_rows else None,
        )

    @classmethod
    def merge(cls, parts: list[ScoreSum]) -> ScoreSum:
        keep = bool(parts) and all(p.ids is not None for p in parts)
        return cls(
            total=sum(p.total for p in parts),
            count=sum(p.count for p in parts),
            ids=[i for p in parts for i in p.ids or []] if keep else None,
            scores=[s for p in parts for s in p.scores or []] if keep else None,
        )

    def mean(self) -> float:
        return units_to_float(self.total) / self.count if self.count else math.nan

    def row_scores(self, name: str) -> dict[str, list] | None:
        return None if self.ids is None else {ID: list(self.ids), name: list(self.scores or [])}


def column(batch: dict[str, list], name: str) -> list:
    try:
        return batch[name]
    except KeyError:
        raise MetricError(f"column '{name}' not in the batch (columns: {', '.join(batch)})") from None


def ids_of(batch: dict[str, list]) -> list:
    if ID in batch:
        return batch[ID]
    # a batch without ids is only valid when it is empty or ids are not needed
    n = len(next(iter(batch.values()))) if batch else 0
    return list(range(n))


def strings(batch: dict[str, list], name: str) -> list[str]:
    """A string column; a null or non-string value is an error naming the row."""
    values = column(batch, name)
    ids = ids_of(batch)
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise MetricError(f"column '{name}' of row {ids[i]!r} is {_kind(v)}, expected a string")
    return values


def reference_lists(batch: dict[str, list], name: str) -> list[list[str]]:
    """A references column: ``list<string>`` (one or more per row) or ``string`` (one per row).

    A null, an empty list or a non-string element is an error naming the row."""
    values = column(batch, name)
    ids = ids_of(batch)
    out: list[list[str]] = []
    for i, v in enumerate(values):
        refs = [v] if isinstance(v, str) else v
        if not isinstance(refs, list | tuple) or not refs:
            raise MetricError(
                f"column '{name}' of row {ids[i]!r} is {_kind(v)}: expected a non-empty list of strings"
            )
        for r in refs:
            if not isinstance(r, str):
                raise MetricError(f"column '{name}' of row {ids[i]!r} holds {_kind(r)}, expected strings")
        out.append(list(refs))
    return out


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, list | tuple) and not v:
        return "an empty list"
    return f"a {type(v).__name__}"


def decode_rgb(value: Any, name: str, row_id: Any) -> Any:
    """A ``PIL.Image`` in RGB from encoded image bytes (PNG, JPEG, ...) or a local path."""
    import io

    from PIL import Image

    if isinstance(value, bytes | bytearray | memoryview):
        source: Any = io.BytesIO(bytes(value))
    elif isinstance(value, str):
        source = value
    else:
        raise MetricError(f"column '{name}' of row {row_id!r} is {_kind(value)}, expected image bytes")
    try:
        with Image.open(source) as img:
            return img.convert("RGB")
    except Exception as e:  # noqa: BLE001 - any decoder error is a bad row
        raise MetricError(f"column '{name}' of row {row_id!r}: cannot decode image: {e}") from e


def torch_device(requested: str | None) -> str:
    """The configured device, else CUDA when this worker has one, else CPU."""
    if requested:
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
