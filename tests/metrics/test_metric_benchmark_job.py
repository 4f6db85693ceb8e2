"""jobs/benchmark_captions.yaml: its metric entries validate and, on the synthetic benchmark
data, give pycocoevalcap's numbers."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from mmbatch.metrics import build_metric, compute_local
from mmbatch.testing.captions import caption_rows, main

from .metric_helpers import relative_difference, requires_java, split_blocks
from .test_metric_captions import reference_scores

JOB = Path(__file__).resolve().parents[2] / "jobs" / "benchmark_captions.yaml"


def test_job_file_opens_with_its_run_command_and_names_three_metrics() -> None:
    text = JOB.read_text()
    assert text.startswith("# Run: mmbatch run jobs/benchmark_captions.yaml")
    job = yaml.safe_load(text)
    assert job["steps"] == [] and job["input"]["id_column"] == "id"
    metrics = [build_metric(m) for m in job["metrics"]]
    assert [m.name for m in metrics] == ["cider", "bleu", "rouge_l"]
    assert all(m.input_columns() == ["caption", "references"] for m in metrics)


def test_sample_data_file(tmp_path: Path) -> None:
    main([str(tmp_path / "d" / "captions.parquet"), "--rows", "50", "--seed", "3"])
    table = pq.read_table(tmp_path / "d" / "captions.parquet")
    assert table.column_names == ["id", "caption", "references"]
    ref_type = table.schema.field("references").type
    assert pa.types.is_list(ref_type) and ref_type.value_type == pa.string()
    assert table.to_pydict() == caption_rows(50, seed=3)
    assert len(set(table.column("id").to_pylist())) == 50


@requires_java
def test_job_metrics_on_sample_data_equal_pycocoevalcap() -> None:
    data = caption_rows(300, seed=1)
    expected = reference_scores(data["caption"], data["references"], tokenize=True)
    entries = yaml.safe_load(JOB.read_text())["metrics"]
    results = {e["metric"]: compute_local(build_metric(e), split_blocks(data, 2)) for e in entries}
    assert relative_difference(results["cider"].value, expected["cider"][0]) <= 1e-12
    assert results["bleu"].value == expected["bleu"][0][3]
    assert relative_difference(results["rouge_l"].value, expected["rouge_l"][0]) <= 1e-12
    assert 0.2 < results["cider"].value < 5 and 0.1 < results["bleu"].value < 0.9
    assert pytest.approx(results["bleu"].details["bleu_1"]) == expected["bleu"][0][0]
