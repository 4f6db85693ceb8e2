"""The run summary: counts, wall time, per-step rates and metrics; written as
``summary.json`` and printed at the end of ``mmbatch run``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import io


@dataclass
class RunSummary:
    job: str
    output: str
    input_rows: int
    rows: int
    errors: int
    skipped: int
    wall_seconds: float
    steps: dict[str, dict[str, float]] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    columns_dropped_at_writer: list[str] = field(default_factory=list)
    """Columns that rode the object store to the writer only to be dropped (a plan defect)."""
    skipped_files: list[dict[str, str]] = field(default_factory=list)
    """Input files left out (``input.on_bad_file: skip``), with the reason."""
    note: str = ""
    code: str = ""
    """How the workers got mmbatch: local, installed (the cluster's image) or shipped (runtime env)."""
    phases: dict[str, float] = field(default_factory=dict)
    """Seconds of the wall time by phase, in order: input scan, Ray start, steps, output check, metrics."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSummary:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    @property
    def rows_per_second(self) -> float:
        return self.input_rows / self.wall_seconds if self.wall_seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["rows_per_second"] = self.rows_per_second
        return d

    def render(self) -> str:
        if not self.steps and self.metrics:  # a metrics-only (benchmark) run
            n = max(m["count"] + m.get("errors_excluded", 0) for m in self.metrics)
            lines = [f"job {self.job}: metrics over {n} input rows", f"wall time {self.wall_seconds:.1f} s"]
            lines += [self._metric_line(m) for m in self.metrics]
            lines.append(f"outputs: {self.output}/{io.METRICS}/, {self.output}/{io.SUMMARY}")
            return "\n".join(lines)
        lines = [
            f"job {self.job}: {self.input_rows} input rows -> {self.rows} rows + {self.errors} error rows"
            + (f" ({self.skipped} done by an earlier run)" if self.skipped else ""),
            f"wall time {self.wall_seconds:.1f} s, {self.rows_per_second:.2f} rows/s"
            + (" (" + ", ".join(f"{k} {v:.1f} s" for k, v in self.phases.items()) + ")" if self.phases else ""),
        ]
        if self.note:
            lines.insert(1, self.note)
        lines += [f"  skipped input file {f['path']}: {f['reason']}" for f in self.skipped_files]
        for label, s in self.steps.items():
            busy = s.get("seconds", 0.0)
            rate = s["rows"] / busy if busy else 0.0
            batch = f", sub-batches of up to {int(s['batch'])} rows" if s.get("batch") else ""
            pil = int(s.get("decoded_by_pil", 0))  # decode_on_device: rows that did not decode on the device
            if pil:
                batch += f", {pil} image{'' if pil == 1 else 's'} decoded by PIL row by row (not JPEGs decode_jpeg takes)"
            n = int(s.get("batches", 0))
            batches = f" in {n} batch{'' if n == 1 else 'es'}" if n else ""
            span = s.get("span", 0.0)
            active = f", {s['rows'] / span:.2f} rows/s while active" if span > 0 else ""
            if "start" in s:
                active += f" (+{s['start']:.1f} s to +{s['end']:.1f} s of the steps)"
            if s.get("setup", 0.0) >= 0.05:  # a stage whose operator builds lazily, in its first batch, shows none
                active += f", worker set-up {s['setup']:.1f} s"
            lines.append(
                f"  {label}: {int(s['rows'])} rows{batches}, {int(s['errors'])} errors born here, "
                f"{rate:.2f} rows/s per worker-second{active}{batch}"
            )
        lines += [self._metric_line(m) for m in self.metrics]
        metrics = f"{self.output}/{io.METRICS}/, " if self.metrics else ""
        lines.append(f"outputs: {self.output}/rows/, {self.output}/errors/, {metrics}{self.output}/{io.SUMMARY}")
        return "\n".join(lines)

    @staticmethod
    def _metric_line(m: dict[str, Any]) -> str:
        excluded = f", {m['errors_excluded']} error rows excluded" if m.get("errors_excluded") else ""
        return f"  metric {m['metric']}: {m['value']!r} over {m['count']} rows{excluded}"
