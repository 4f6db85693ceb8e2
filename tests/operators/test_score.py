"""The score step: per-row scores of row-local metrics as a column, equal to the reference
library per row, and to the metric's own per-row scores."""

import jiwer
import pyarrow as pa
import pytest

from mmbatch.metrics import build_metric, compute_local
from mmbatch.pipelines.spec import JobSpecError, check_columns, job_from_dict

from .helpers import make_op

HYPS = ["the cat sat", "a dog", "", "hello there world", "x y z", "same"]
REFS = ["the cat sat down", "a big dog", "nothing said", None, "x y", "same"]


def test_wer_per_row_equals_jiwer_and_null_reference_gives_null_score():
    op = make_op("score", metric="wer", prediction="text", reference="reference")
    out = op(pa.table({"text": HYPS, "reference": REFS}))
    assert out.column("error").null_count == len(HYPS)  # a missing reference is not an error
    got = out.column("wer").to_pylist()
    assert out.schema.field("wer").type == pa.float64()
    for h, r, g in zip(HYPS, REFS, got, strict=True):
        assert g == (None if r is None else jiwer.process_words(r, h).wer)


def test_named_score_equals_the_metrics_own_per_row_scores():
    answers = [["red"] * 7 + ["blue"] * 3, ["2"] * 10, ["yes"] * 2 + ["no"] * 8]
    preds = ["red", "two", "Yes"]
    op = make_op("score", metric="vqa_accuracy", name="acc", prediction="answer", references="answers")
    got = op(pa.table({"answer": preds, "answers": answers})).column("acc").to_pylist()
    metric = build_metric({"metric": "vqa_accuracy", "prediction": "answer", "references": "answers", "per_row": True})
    ref = compute_local(metric, [{"id": [0, 1, 2], "answer": preds, "answers": answers}]).row_scores["vqa_accuracy"]
    assert got == ref
    assert got[0] == pytest.approx(100.0) and got[2] < 100.0


@pytest.mark.parametrize(
    "keys, message",
    [
        ({"metric": "cider", "prediction": "c", "references": "r"}, "put it under metrics"),
        ({"metric": "fid", "images": "i", "reference": "r"}, "put it under metrics"),
        ({"metric": "wer", "prediction": "t", "refrence": "r"}, "its keys: .*reference"),
        ({"metric": "wer", "prediction": "t", "reference": "r", "per_row": False}, "drop the key"),
        ({"metric": "nope"}, "unknown metric"),
    ],
)
def test_score_config_errors_name_the_problem(keys, message):
    with pytest.raises(JobSpecError, match=message):
        job_from_dict({"name": "s", "input": {"path": "x"}, "steps": [{"op": "score", **keys}],
                       "output": {"path": "o"}})


def test_score_columns_are_checked_before_launch():
    job = job_from_dict({"name": "s", "input": {"path": "x"}, "output": {"path": "o"},
                         "steps": [{"op": "score", "metric": "cer", "prediction": "text", "reference": "reference"}]})
    with pytest.raises(JobSpecError, match="reads column.*'reference'"):
        check_columns(job, ["id", "text"])
