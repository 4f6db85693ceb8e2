"""Metrics through the engine: per-block partial states in Ray, merged on the driver,
equal to the same metric computed on the whole corpus in one process."""

import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmbatch.metrics import build_metric, compute_local

WORDS = "a the cat dog sits on mat red blue square circle runs fast small big".split()


def corpus(n, seed=0):
    rng = random.Random(seed)
    sent = lambda: " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9)))  # noqa: E731
    return [{"id": f"r{i}", "caption": sent(), "references": [sent() for _ in range(rng.randint(1, 5))],
             "error": None} for i in range(n)]


def test_metrics_only_job_equals_whole_corpus_reference(tmp_path, run_job_dict):
    rows = corpus(120)
    rows[7]["error"] = rows[50]["error"] = "steps[1] caption: failed earlier"
    data = tmp_path / "preds"
    data.mkdir()
    for k in range(4):  # four shards -> several blocks
        pq.write_table(pa.Table.from_pylist(rows[k * 30:(k + 1) * 30]), data / f"part-{k}.parquet")
    metrics = [
        {"metric": "cider", "prediction": "caption", "references": "references", "tokenizer": "none"},
        # a metric may reserve GPUs (FID, CLIPScore): its passes then run in an actor pool
        {"metric": "bleu", "prediction": "caption", "references": "references", "tokenizer": "none",
         "resources": {"gpus": 1, "cpus": 0.5}},
    ]
    summary = run_job_dict({"input": {"path": str(data), "id_column": "id"}, "steps": [],
                            "output": {"path": str(tmp_path / "out")}, "metrics": metrics})
    table = pq.read_table(tmp_path / "out" / "metrics").to_pylist()
    by_name = {r["metric"]: r for r in table}
    good = [r for r in rows if r["error"] is None]
    batch = {"id": [r["id"] for r in good], "caption": [r["caption"] for r in good],
             "references": [r["references"] for r in good]}
    for m in metrics:
        ref = compute_local(build_metric(m), [batch])
        got = by_name[m["metric"]]
        assert got["count"] == 118 == ref.count
        assert got["errors_excluded"] == 2
        assert got["value"] == pytest.approx(ref.value, rel=1e-12)
        assert got["job"] == "test-job"
    assert {m["metric"] for m in summary.metrics} == {"cider", "bleu"}
    assert by_name["cider"]["value"] > 0
    text = summary.render()
    assert text.startswith("job test-job: metrics over 120 input rows")
    assert f"metric cider: {by_name['cider']['value']!r} over 118 rows, 2 error rows excluded" in text


class _Recorder:
    """Stands in for a Ray Dataset: records how a metric pass maps it."""

    def __init__(self):
        self.calls = []

    def map_batches(self, fn, **kwargs):
        self.calls.append((fn, kwargs))
        return self

    def take_all(self):
        return []


def test_metric_passes_reserve_the_metrics_resources():
    from mmbatch.pipelines.metric_passes import MetricPass, _pass_states

    ds = _Recorder()
    gpu = build_metric({"metric": "wer", "prediction": "p", "reference": "r",
                        "resources": {"gpus": 1, "cpus": 2, "concurrency": [1, 3]}})
    _pass_states(ds, gpu, 0, None, ["id", "p", "r"])
    fn, kwargs = ds.calls[-1]
    assert fn is MetricPass and kwargs["num_gpus"] == 1 and kwargs["num_cpus"] == 2
    assert (kwargs["compute"].min_size, kwargs["compute"].max_size) == (1, 3)
    cpu = build_metric({"metric": "wer", "prediction": "p", "reference": "r"})
    _pass_states(ds, cpu, 0, None, ["id", "p", "r"])
    fn, kwargs = ds.calls[-1]
    assert isinstance(fn, MetricPass) and kwargs["num_cpus"] == 1 and "num_gpus" not in kwargs
