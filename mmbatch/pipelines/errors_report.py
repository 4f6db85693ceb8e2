"""``mmbatch errors OUT``: the error rows of an output, counted by the step that caused
them and the reason, with sample ids. No Ray here."""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

import pyarrow.parquet as pq

from . import io

_DETAIL = re.compile(r"\s*\(.*$")


def split_error(error: str) -> tuple[str, str]:
    """``"steps[0] decode_image: ValueError: not a decodable image (12 bytes, ...)"`` ->
    (``steps[0] decode_image``, ``ValueError: not a decodable image``): the step, and the
    reason without its row-specific details."""
    step, _, reason = error.partition(": ")
    return step, _DETAIL.sub("", reason)[:160]


def error_groups(path: str, id_column: str = "id", storage_options: dict[str, Any] | None = None,
                 samples: int = 3) -> list[tuple[str, str, int, list[Any]]]:
    """(step, reason, count, sample ids), most frequent first."""
    fs, _ = io.filesystem(path, storage_options)
    groups: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for f in io.output_files(path, io.ERRORS, storage_options):
        with fs.open(f, "rb") as fh:
            schema = pq.read_schema(fh)
            fh.seek(0)
            columns = ["error"] + ([id_column] if id_column in schema.names else [])
            table = pq.read_table(fh, columns=columns)
        ids = table.column(id_column).to_pylist() if id_column in table.column_names else [None] * table.num_rows
        for row_id, error in zip(ids, table.column("error").to_pylist(), strict=True):
            groups[split_error(error or "")].append(row_id)
    ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    return [(step, reason, len(ids), ids[:samples]) for (step, reason), ids in ordered]


def render(path: str, groups: list[tuple[str, str, int, list[Any]]]) -> str:
    if not groups:
        return f"{path}: no error rows"
    total = sum(n for _, _, n, _ in groups)
    lines = [f"{path}: {total} error rows"]
    by_step: dict[str, int] = defaultdict(int)
    for step, _, n, _ in groups:
        by_step[step] += n
    for step, n in sorted(by_step.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {step}: {n}")
        for s, reason, count, ids in groups:
            if s == step:
                lines.append(f"    {count:6d}  {reason}   e.g. {', '.join(map(str, ids))}")
    return "\n".join(lines)
