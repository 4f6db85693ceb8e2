"""Shipped job files run end to end, as a user runs them, on tiny random-weight models.

(vqa, generate_images and classify_video run in tests/operators; benchmark_captions in
tests/metrics.)"""

import json

import pyarrow.parquet as pq
import pytest

from mmbatch.pipelines.cli import main


@pytest.mark.slow
def test_quickstart_command_accounts_for_every_row(ray_session, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # not the repository: the shipped job is found by name
    monkeypatch.setenv("MMBATCH_QUICKSTART", "unset")  # the command sets it for its own run
    assert main(["quickstart", "--dir", "qs"]) == 0
    out = tmp_path / "qs" / "out"
    summary = json.loads((out / "summary.json").read_text())
    rows, errors = pq.read_table(out / "rows"), pq.read_table(out / "errors")
    assert summary["input_rows"] == 101 == rows.num_rows + errors.num_rows and errors.num_rows == 5
    assert summary["rows"] == rows.num_rows and summary["errors"] == errors.num_rows
    assert set(rows.column_names) >= {"id", "image_embedding", "label", "label_topk", "label_scores", "caption"}
    assert all(e.startswith("steps[0] decode_image: ") for e in errors.column("error").to_pylist())
    assert "job quickstart: 101 input rows -> 96 rows + 5 error rows" in capsys.readouterr().out
    # the error rows by the step that caused them and the reason, with sample ids
    assert main(["errors", str(out)]) == 0
    report = capsys.readouterr().out.splitlines()
    assert report[:2] == [f"{out}: 5 error rows", "  steps[0] decode_image: 5"]
    counts = [int(line.split()[0]) for line in report[2:]]
    assert sum(counts) == 5 and all("e.g. bad-" in line for line in report[2:])
    assert any("ValueError: empty image   e.g. bad-empty" in line for line in report[2:])


@pytest.mark.slow
@pytest.mark.parametrize("job, model", [("transcribe_archive", "whisper"), ("transcribe_archive_ct2", "whisper_ct2")])
def test_transcribe_archive_jobs(job, model, ray_session, tiny_models, tmp_path, monkeypatch, capsys):
    from mmbatch.testing.audio import BAD_KINDS, write_audio_folder

    files = write_audio_folder(tmp_path / "recordings", 6, durations=(0.5, 3.0), bad=BAD_KINDS[:2])
    monkeypatch.setenv("ASR_INPUT", str(tmp_path / "recordings"))
    monkeypatch.setenv("ASR_MODEL", str(tiny_models(model)))
    monkeypatch.setenv("ASR_OUTPUT", str(tmp_path / "out"))
    assert main(["run", f"jobs/{job}.yaml", "steps.1.max_new_tokens=4", "steps.1.resources.cpus=0.5"]) == 0
    rows, errors = pq.read_table(tmp_path / "out" / "rows"), pq.read_table(tmp_path / "out" / "errors")
    assert rows.num_rows + errors.num_rows == len(files) and errors.num_rows == 2
    assert {"path", "text", "text_segments", "duration"} <= set(rows.column_names)
    assert "audio" not in rows.column_names
    assert f"{len(files)} input rows -> {rows.num_rows} rows + 2 error rows" in capsys.readouterr().out
