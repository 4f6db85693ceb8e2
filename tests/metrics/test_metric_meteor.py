"""METEOR against pycocoevalcap's ``Meteor`` (the METEOR 1.5 jar) on the same corpus."""

from __future__ import annotations

import pytest

from mmbatch.metrics import build_metric, compute_local

from .metric_helpers import caption_corpus, requires_java, split_blocks


@requires_java
def test_meteor_equals_pycocoevalcap_for_any_blocking(monkeypatch: pytest.MonkeyPatch) -> None:
    """~12 s: the METEOR JVM loads its paraphrase tables once."""
    from pycocoevalcap.meteor.meteor import Meteor

    from mmbatch.metrics import meteor

    data = caption_corpus(150, seed=11)
    gts = {i: r for i, r in enumerate(data["references"])}
    res = {i: [p] for i, p in enumerate(data["caption"])}
    reference = Meteor()
    expected, expected_rows = reference.compute_score(gts, res)
    # the jar answers each request on its own: reuse its process instead of loading a second
    monkeypatch.setattr(meteor, "_PROCESS", reference)
    results = []
    for blocks in (1, 3, 17):
        metric = build_metric({"metric": "meteor", "prediction": "caption", "references": "references",
                               "tokenizer": "none", "per_row": True})
        results.append(compute_local(metric, split_blocks(data, blocks, seed=blocks)))
    for result in results:
        assert result.value == expected  # the same statistics lines, the same jar: same bits
        assert result.count == 150
        assert result.row_scores["meteor"] == [float(x) for x in expected_rows]
        assert result.row_scores["id"] == data["id"]
    # the corpus score aggregates statistics: it is not the mean of the segment scores
    assert abs(expected - sum(expected_rows) / len(expected_rows)) > 1e-3
