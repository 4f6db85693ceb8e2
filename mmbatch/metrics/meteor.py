"""METEOR 1.5, equal to ``pycocoevalcap.meteor.Meteor`` on the same PTB-tokenised text.

pycocoevalcap's corpus METEOR is *not* the mean of the segment scores: it asks the jar for
each segment's sufficient statistics (``SCORE ||| refs ||| hyp``) and then sends all of them
in one ``EVAL`` line; the jar sums the statistics and scores the sums. So here:

1. each block is tokenised and its statistics lines are computed by a METEOR jar process
   (started once per worker process, ``java -Xmx2G``, about 10 s to load its tables);
2. the driver concatenates the lines in block order and sends the same ``EVAL`` line as
   pycocoevalcap, on its own jar process.

The state is one short text line per row. Needs Java on the workers and on the driver.
Per-row: each segment's METEOR as the jar returns it.
"""

from __future__ import annotations

import atexit
import threading
from dataclasses import dataclass, field
from typing import Any

from mmbatch.core.metric import MetricError, MetricResult, register_metric
from mmbatch.core.requirements import Requirements

from .captions import CaptionMetric

_PROCESS: Any = None
_PROCESS_LOCK = threading.Lock()


def meteor_process() -> Any:
    """This process's pycocoevalcap ``Meteor`` (one jar process), started on first use."""
    global _PROCESS
    with _PROCESS_LOCK:
        if _PROCESS is None or _PROCESS.meteor_p.poll() is not None:
            from pycocoevalcap.meteor.meteor import Meteor

            _PROCESS = Meteor()
            atexit.register(_close, _PROCESS)
        return _PROCESS


def _close(meteor: Any) -> None:
    try:
        meteor.meteor_p.stdin.close()
        meteor.meteor_p.kill()
        meteor.meteor_p.wait()
    except Exception:  # noqa: BLE001 - best effort at interpreter exit
        pass


def _readline(meteor: Any) -> str:
    line = meteor.meteor_p.stdout.readline()
    if not line:
        err = meteor.meteor_p.stderr.read().decode(errors="replace")[-2000:]
        raise MetricError(f"the METEOR jar stopped: {err}")
    return line.decode().strip()


def segment_stats(hypotheses: list[str], references: list[list[str]]) -> list[str]:
    """The jar's statistics line of each segment (pycocoevalcap ``Meteor._stat``)."""
    meteor = meteor_process()
    with meteor.lock:
        return [meteor._stat(h, rs) for h, rs in zip(hypotheses, references, strict=True)]


def evaluate(stats: list[str]) -> tuple[float, list[float]]:
    """``(corpus score, segment scores)`` for statistics lines, as ``Meteor.compute_score``."""
    meteor = meteor_process()
    with meteor.lock:
        meteor.meteor_p.stdin.write(("EVAL ||| " + " ||| ".join(stats) + "\n").encode())
        meteor.meteor_p.stdin.flush()
        segments = [float(_readline(meteor)) for _ in stats]
        return float(_readline(meteor)), segments


@dataclass
class MeteorState:
    ids: list = field(default_factory=list)
    stats: list[str] = field(default_factory=list)


@register_metric("meteor")
class MeteorMetric(CaptionMetric):
    """METEOR 1.5 (pycocoevalcap ``Meteor``)."""

    row_local = True

    def requirements(self) -> Requirements:
        return self.requires  # Java runs the METEOR jar, whatever the tokenizer

    def setup(self) -> None:
        meteor_process()

    def partial(self, batch: dict[str, list], pass_index: int, broadcast: Any) -> MeteorState:
        ids, preds, refs = self.rows(batch)
        return MeteorState(list(ids), segment_stats(preds, refs) if preds else [])

    def merge(self, states: list[MeteorState]) -> MeteorState:
        return MeteorState([i for s in states for i in s.ids], [x for s in states for x in s.stats])

    def finalize(self, merged: MeteorState, broadcast: Any) -> MetricResult:
        if not merged.stats:
            return MetricResult(self.output_name, float("nan"), 0)
        score, segments = evaluate(merged.stats)
        rows = {"id": merged.ids, self.output_name: segments} if self.config.per_row else None
        return MetricResult(self.output_name, score, len(merged.stats), row_scores=rows)
