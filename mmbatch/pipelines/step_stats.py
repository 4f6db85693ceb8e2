"""Per-step counters of a run: the workers report each batch's to one Ray actor, and the
summary reads them from it.

Kept apart from the engine and light to import (the standard library alone at import time):
the stats actor's worker process imports this module and nothing else of mmbatch.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mmbatch.operators.base import AnyOperator

# Step statistics that are a largest or smallest value, not a sum: the chosen batch size,
# the slowest worker's set-up (imports, model load, device), and the wall-clock end of the
# step's last batch and start of its first.
MAX_STATS = frozenset({"batch", "setup", "last"})
MIN_STATS = frozenset({"first"})


class StepStats:
    """Counters of every step, sent by the workers as deltas (one Ray actor per run)."""

    def __init__(self) -> None:
        self.by_step: dict[str, dict[str, float]] = {}
        self.workers: dict[str, set[str]] = {}
        self.batches: set[tuple[str, str]] = set()

    def record(self, label: str, worker: str, batch: str, delta: dict[str, float]) -> None:
        """Add a worker's counters for one batch -- once: a batch Ray retries (a task or an
        actor that died) is processed again, but counted only the first time."""
        if (label, batch) in self.batches:
            return
        self.batches.add((label, batch))
        s = self.by_step.setdefault(label, {"rows": 0, "errors": 0, "seconds": 0.0, "builds": 0})
        for k, v in delta.items():
            if k in MAX_STATS:
                s[k] = max(s.get(k, v), v)
            elif k in MIN_STATS:
                s[k] = min(s.get(k, v), v)
            else:
                s[k] = s.get(k, 0) + v
        self.workers.setdefault(label, set()).add(worker)

    def get(self, since: float | None = None) -> dict[str, dict[str, float]]:
        """Per step: rows, batches, errors, busy seconds summed over workers, builds, workers, and
        ``span``: seconds from the start of its first batch to the end of its last; with
        ``since`` (the run's start, epoch seconds), ``start`` and ``end`` of that span after it."""
        out = {}
        for label, s in self.by_step.items():
            first, last = s.get("first"), s.get("last")
            times: dict[str, float] = {}
            if first is not None and last is not None:
                times["span"] = last - first
                if since is not None:
                    times |= {"start": first - since, "end": last - since}
            rest = {k: v for k, v in s.items() if k not in MIN_STATS and k != "last"}
            out[label] = rest | times | {"workers": len(self.workers.get(label, ()))}
        return out


def stats_actor() -> Any:
    """A new :class:`StepStats` actor (no CPU of its own)."""
    import ray

    return ray.remote(num_cpus=0)(StepStats).remote()


class Reporter:
    """Sends one worker's counters since its last report to the stats actor."""

    def __init__(self, stats: Any, label: str, sent: dict[str, float] | None = None) -> None:
        self.stats, self.label = stats, label
        self.worker = f"{os.uname().nodename}:{os.getpid()}"
        self.sent: dict[str, float] = dict(sent or {})
        """The counters already reported (an operator kept from an earlier run: its totals then)."""

    def report(self, op: AnyOperator, batch: str, start: float, builds: int = 0, setup: float = 0.0) -> None:
        """Send the counters of one batch, which began at wall-clock ``start`` and ends now
        (``setup``: the seconds this worker took to build its operator, with its first batch)."""
        delta: dict[str, float] = {
            k: v if k in MAX_STATS else v - self.sent.get(k, 0) for k, v in op.stats.items()
        }
        self.sent.update(op.stats)
        delta |= {"batches": 1, "first": start, "last": time.time()}
        if builds:
            delta["builds"] = builds
        if setup:
            delta["setup"] = setup
        if self.stats is not None:
            import ray

            # waited for: a report still in flight when the run ends would be lost from the summary
            ray.get(self.stats.record.remote(self.label, self.worker, batch, delta))
