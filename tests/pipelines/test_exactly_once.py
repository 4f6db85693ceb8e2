"""Every id exactly once: input checks before Ray, the manifest, and what --resume accepts."""

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmbatch.pipelines.planning import JobRunError
from mmbatch.pipelines.spec import JobSpecError
from mmbatch.testing.images import write_image_parquet


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def job(data, out, **step):
    return {"input": {"path": str(data)}, "output": {"path": str(out)},
            "steps": [{"op": "decode_image", "resize": 16}, {"op": "embed", "resources": {"cpus": 0.5}} | step]}


def test_resume_refuses_a_changed_job_and_leaves_the_output_as_it_was(tmp_path, tiny_models, run_job_dict, monkeypatch):
    data, out = tmp_path / "data", tmp_path / "out"
    write_image_parquet(data, 12, size=(24, 24), shards=2)
    clip = str(tiny_models("clip"))
    first = run_job_dict(job(data, out, model=clip))
    assert (first.rows, first.errors) == (12, 0)
    manifest = (out / "manifest.json").read_text()
    assert '"state": "complete"' in manifest and '"model_fingerprint": "sha256:' in manifest
    before = snapshot(out)

    other = tmp_path / "other-clip"
    import shutil

    shutil.copytree(clip, other)
    (other / "extra.txt").write_text("a different model folder")
    with pytest.raises(JobRunError, match=r"--resume refused: steps\[1\] embed: model .*--overwrite"):
        run_job_dict(job(data, out, model=str(other)), resume=True)
    with pytest.raises(JobRunError, match=r"--resume refused: steps\[1\] embed: normalize True -> False"):
        run_job_dict(job(data, out, model=clip, normalize=False), resume=True)
    changed_steps = job(data, out, model=clip)
    changed_steps["steps"] = changed_steps["steps"][:1]
    with pytest.raises(JobRunError, match=r"--resume refused: steps\[1\] embed was removed"):
        run_job_dict(changed_steps, resume=True)
    assert snapshot(out) == before

    # unchanged and finished: nothing to do, and nothing is started
    from mmbatch.pipelines import run as run_module

    monkeypatch.setattr(run_module, "init_ray", lambda *a, **k: pytest.fail("a no-op resume started Ray"))
    again = run_job_dict(job(data, out, model=clip, resources={"cpus": 0.25}), resume=True)
    assert again.note.startswith("nothing left to do") and (again.rows, again.errors) == (12, 0)
    assert snapshot(out) == before


def test_retry_errors_redoes_only_the_error_rows(tmp_path, tiny_models, run_job_dict):
    data, out = tmp_path / "data", tmp_path / "out"
    bad = write_image_parquet(data, 8, size=(24, 24), with_bad=True)
    clip = str(tiny_models("clip"))
    first = run_job_dict(job(data, out, model=clip))
    rows_before = snapshot(out / "rows")
    again = run_job_dict(job(data, out, model=clip), retry_errors=True)
    assert (again.rows, again.errors, again.skipped) == (8, len(bad), 8)
    assert snapshot(out / "rows") == rows_before  # the good rows were not redone
    assert first.errors == again.errors


def test_input_checks_name_the_file_before_anything_runs(tmp_path, run_job_dict):
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(pa.table({"id": ["a", "b"], "image": [b"x", b"y"]}), data / "part-0.parquet")
    pq.write_table(pa.table({"key": ["c"], "image": [b"z"]}), data / "part-1.parquet")
    spec = {"input": {"path": str(data)}, "steps": [{"op": "decode_image"}], "output": {"path": str(tmp_path / "o")}}
    with pytest.raises(JobSpecError, match=r"part-1.parquet: no id column 'id' \(columns: key, image\)"):
        run_job_dict(spec)
    (data / "part-1.parquet").write_bytes(pq.read_metadata(data / "part-0.parquet") and b"PAR1 truncated")
    with pytest.raises(JobSpecError, match=r"part-1.parquet: not a readable Parquet file .*on_bad_file: skip"):
        run_job_dict(spec)
    summary = run_job_dict(spec | {"input": spec["input"] | {"on_bad_file": "skip"}})
    assert summary.rows + summary.errors == 2
    assert [f["path"].rsplit("/", 1)[-1] for f in summary.skipped_files] == ["part-1.parquet"]
    assert "part-1.parquet" in (tmp_path / "o" / "manifest.json").read_text()


def test_duplicate_ids_are_refused_or_made_error_rows(tmp_path, run_job_dict):
    from mmbatch.testing.images import encode, synthetic_image

    data = tmp_path / "data"
    data.mkdir()
    img = encode(synthetic_image(0, (8, 8)), "PNG")
    pq.write_table(pa.table({"id": ["a", "b", "a"], "image": [img] * 3}), data / "part-0.parquet")
    pq.write_table(pa.table({"id": ["c", "b"], "image": [img] * 2}), data / "part-1.parquet")
    spec = {"input": {"path": str(data)}, "steps": [{"op": "decode_image"}], "output": {"path": str(tmp_path / "o")}}
    with pytest.raises(JobSpecError, match=r"2 ids are held by more than one row, e.g. 'a' \(2 rows\), 'b' \(2 rows\)"):
        run_job_dict(spec)
    summary = run_job_dict(spec | {"input": spec["input"] | {"duplicate_ids": "error"}})
    errors = pq.read_table(tmp_path / "o" / "errors").to_pylist()
    assert (summary.rows, summary.errors) == (1, 4)
    assert sorted(e["id"] for e in errors) == ["a", "a", "b", "b"]
    assert all(e["error"].startswith("input: duplicate id: 2 rows have id") for e in errors)


def test_an_unwritable_output_fails_before_ray_starts(tmp_path, run_job_dict, monkeypatch):
    from mmbatch.pipelines import run as run_module

    data = tmp_path / "data"
    write_image_parquet(data, 2, size=(8, 8))
    locked = tmp_path / "locked"
    locked.write_text("a file, not a folder")
    monkeypatch.setattr(run_module, "init_ray", lambda *a, **k: pytest.fail("Ray started"))
    with pytest.raises(JobRunError, match=r"output .*locked/out is not writable"):
        run_job_dict({"input": {"path": str(data)}, "steps": [{"op": "decode_image"}],
                      "output": {"path": str(locked / "out")}})
