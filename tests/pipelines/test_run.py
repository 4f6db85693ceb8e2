"""End-to-end runs on the session's local Ray (4 logical CPUs, 2 logical GPUs)."""

import numpy as np
import pyarrow.parquet as pq
import pytest

from mmbatch.core.resources import Resources
from mmbatch.pipelines.planning import JobRunError, PlannedStep, check_cluster
from mmbatch.pipelines.spec import job_from_dict
from mmbatch.testing.images import write_image_folder, write_image_parquet


def read(path):
    return pq.read_table(path) if path.exists() else None


@pytest.mark.slow
def test_multi_shard_gpu_requesting_job_accounts_for_every_row(tmp_path, tiny_models, run_job_dict):
    data = tmp_path / "data"
    bad = write_image_parquet(data, 40, size=(96, 64), shards=5, with_bad=True)
    clip = str(tiny_models("clip"))
    out = tmp_path / "out"
    summary = run_job_dict({
        "input": {"path": str(data), "id_column": "id"},
        "steps": [
            {"op": "decode_image", "resize": 64, "batch_size": 8},
            # logical GPUs: up to 8 actors of a quarter GPU; they run on CPU inside the actors
            {"op": "embed", "model": clip, "batch_size": 4,
             "resources": {"gpus": 0.25, "cpus": 0.25, "concurrency": [1, 8]}},
        ],
        "output": {"path": str(out)},
    })
    rows, errors = read(out / "rows"), read(out / "errors")
    assert summary.input_rows == 45 == summary.rows + summary.errors
    assert (rows.num_rows, errors.num_rows) == (40, 5)
    assert sorted(errors.column("id").to_pylist()) == sorted(bad)
    assert all(e.startswith("steps[0] decode_image:") for e in errors.column("error").to_pylist())
    ids = rows.column("id").to_pylist()
    assert len(set(ids)) == 40 and "error" not in rows.column_names and "pixels" not in rows.column_names
    emb = np.array(rows.column("image_embedding").to_pylist(), dtype=np.float32)
    assert emb.shape[0] == 40 and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    assert summary.steps["steps[1] embed"]["rows"] == 45  # rows seen, error rows passed through
    assert summary.steps["steps[0] decode_image"]["errors"] == 5

    # the same rows computed in-process give the same embeddings (engine adds nothing)
    from tests.operators.helpers import make_op, run_ops
    table = pq.read_table(data)
    direct = run_ops(table, make_op("decode_image", resize=64), make_op("embed", model=clip))
    by_id = dict(zip(direct.column("id").to_pylist(), direct.column("image_embedding").to_pylist(), strict=True))
    got = dict(zip(ids, rows.column("image_embedding").to_pylist(), strict=True))
    for i in ids[:10]:
        np.testing.assert_allclose(got[i], by_id[i], atol=1e-5)

    # resume after a "crash": lose one rows file, run again with resume
    files = sorted((out / "rows").glob("*.parquet"))
    lost = pq.read_table(files[0]).num_rows
    files[0].unlink()
    with pytest.raises(JobRunError, match="--resume"):
        run_job_dict({"input": {"path": str(data)}, "steps": [{"op": "decode_image"}], "output": {"path": str(out)}})
    again = run_job_dict({
        "input": {"path": str(data), "id_column": "id"},
        "steps": [{"op": "decode_image", "resize": 64}, {"op": "embed", "model": clip, "resources": {"cpus": 0.5}}],
        "output": {"path": str(out)},
    }, resume=True)
    # the summary counts the whole output; skipped: rows an earlier run wrote
    assert again.skipped == 45 - lost and (again.rows, again.errors, again.input_rows) == (40, 5, 45)
    rows = read(out / "rows")
    assert sorted(rows.column("id").to_pylist()) == sorted(ids)


def test_image_folder_input_overwrite_and_limit(tmp_path, run_job_dict):
    folder = tmp_path / "imgs"
    write_image_folder(folder, 6, size=(40, 30), fmt="PNG")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    (folder / "notes.txt").write_text("ignored: not an image extension")
    job = {"input": {"path": str(folder), "format": "images", "id_column": "path"},
           "steps": [{"op": "decode_image"}], "output": {"path": str(tmp_path / "out")}}
    s = run_job_dict(job)
    assert (s.rows, s.errors) == (6, 1)
    rows = read(tmp_path / "out" / "rows")
    assert set(rows.column_names) >= {"path", "image_width", "image_height"}
    assert "image" not in rows.column_names  # the files' bytes are not copied by default
    assert rows.column("image_width").to_pylist() == [40] * 6
    errors = read(tmp_path / "out" / "errors")
    assert errors.column("path").to_pylist()[0].endswith("broken.jpg")
    assert "image_width" not in errors.column_names  # errors/: input columns + error only
    assert errors.column("error").to_pylist()[0].startswith("steps[0] decode_image: ")
    s = run_job_dict(job | {"output": job["output"] | {"keep_file_bytes": True}}, overwrite=True)
    kept = read(tmp_path / "out" / "rows")
    assert sorted(kept.column("image").to_pylist()) == sorted(p.read_bytes() for p in folder.glob("*.png"))
    s = run_job_dict(job | {"input": job["input"] | {"limit": 3}}, overwrite=True)
    assert s.rows + s.errors == 3
    assert read(tmp_path / "out" / "rows").num_rows + (
        read(tmp_path / "out" / "errors").num_rows if (tmp_path / "out" / "errors").exists() else 0) == 3


def _planned(gpus=0.0, cpus=1.0, concurrency=1, step=1):
    """A planned step of a decode_image (0) -> embed (1) job."""
    job = job_from_dict({"name": "p", "input": {"path": "x", "columns": ["id", "image"]},
                         "steps": [{"op": "decode_image"}, {"op": "embed", "model": "m"}], "output": {"path": "o"}})
    step = job.steps[step]
    return PlannedStep(step, Resources(gpus=gpus, cpus=cpus, concurrency=concurrency), {}, {}, set())


def test_cluster_checks_fail_fast_instead_of_hanging():
    with pytest.raises(JobRunError, match="asks for 0.25 GPU.*has 0 GPUs.*--cpu"):
        check_cluster([_planned(gpus=0.25)], {"CPU": 16})
    with pytest.raises(JobRunError, match="would hang"):
        check_cluster([_planned(cpus=1, concurrency=2)], {"CPU": 2})
    check_cluster([_planned(cpus=0.5, concurrency=2)], {"CPU": 2})
    check_cluster([_planned(gpus=0.25, cpus=0.25, concurrency=(1, 8))], {"CPU": 2, "GPU": 2})


def test_a_job_refused_before_its_steps_ran_leaves_no_run_behind(tmp_path, run_job_dict, tiny_models):
    """A job the cluster cannot run is refused before any step runs and writes nothing, so
    the same command, once mended, runs without --overwrite (before, its manifest.json was
    taken for an earlier run)."""
    folder = tmp_path / "imgs"
    write_image_folder(folder, 3, size=(8, 8), fmt="PNG")
    job = {"input": {"path": str(folder), "format": "images", "id_column": "path"},
           "steps": [{"op": "decode_image"}, {"op": "embed", "model": str(tiny_models("clip")),
                                              "resources": {"cpus": 64}}]}
    for _ in range(2):  # the same refusal twice, not "already holds" the second time
        with pytest.raises(JobRunError, match="asks for 64 CPUs per worker"):
            run_job_dict(job)
    assert not list((tmp_path / "out").rglob("*.*"))
    job["steps"][1]["resources"] = {"cpus": 0.5}
    assert run_job_dict(job).rows == 3


def test_stateless_step_builds_its_operator_once_per_worker_process(tmp_path, run_job_dict):
    folder = tmp_path / "imgs"
    write_image_folder(folder, 30, size=(8, 8), fmt="PNG")
    s = run_job_dict({"input": {"path": str(folder), "format": "images", "id_column": "path"},
                      "steps": [{"op": "decode_image", "batch_size": 1}], "output": {"path": str(tmp_path / "out")}})
    decode = s.steps["steps[0] decode_image"]
    # 30 one-row batches (Ray unpickles the task's callable anew for each), a few processes
    assert decode["rows"] == 30 and 1 <= decode["builds"] == decode["workers"] < 30
    # a task stage's set-up (its operator's build in a fresh worker) is recorded as a model step's is
    assert decode["setup"] > 0


def test_one_big_file_streams_in_blocks_and_transient_columns_die_early(tmp_path, tiny_models, run_job_dict):
    data = tmp_path / "one.parquet"
    write_image_parquet(data, 1200, size=(16, 16), fmt="PNG")
    out = tmp_path / "out"
    summary = run_job_dict({
        "input": {"path": str(data), "block_rows": 200},
        "steps": [{"op": "decode_image", "batch_size": 100},
                  {"op": "embed", "model": str(tiny_models("clip")), "batch_size": 100, "resources": {"cpus": 0.5}}],
        "output": {"path": str(out)},
    })
    assert summary.rows == 1200 and summary.errors == 0
    # the wall time by phase, and the model worker's set-up before its first batch
    assert list(summary.phases) == ["input scan", "Ray start", "steps", "output check"]
    assert 0 < sum(summary.phases.values()) <= summary.wall_seconds
    assert summary.phases["steps"] > summary.steps["steps[1] embed"]["setup"] > 0
    assert "worker set-up" in summary.render() and "Ray start" in summary.render()
    files = sorted((out / "rows").glob("*.parquet"), key=lambda f: f.stat().st_mtime_ns)
    sizes = [pq.read_metadata(f).num_rows for f in files]
    # one input file, read in blocks of one 100-row batch and written as they finish (not
    # once at the end), in files of about block_rows: at least 200 rows but the remainder
    assert sum(sizes) == 1200 and len(files) >= 3 and max(sizes) < 400
    assert sum(1 for n in sizes if n < 200) <= 1
    assert files[0].stat().st_mtime_ns < files[-1].stat().st_mtime_ns
    # pixels die after their last reader (the embed prepare stage), the prepared tensors after
    # the model: nothing rides to the writer only to be dropped there
    assert summary.columns_dropped_at_writer == []
    rows = read(out / "rows")
    assert set(rows.column_names) == {"id", "references", "image_width", "image_height", "image_frames", "image_embedding"}
    assert rows.schema.field("image_embedding").type.list_size == 24  # fixed_size_list<float32>[d]


def test_write_follows_the_last_stage():
    from mmbatch.pipelines.executor import WriteStage, remote_args, write_stage

    # after a CPU task stage: that stage's remote args and cap, so Ray Data fuses the write
    # into its tasks; files of one task's rows (about a block)
    decode = _planned(cpus=0.5, concurrency=3, step=0)
    w = write_stage([decode], cpus=16, block=192, file_rows=1024)
    assert (w.remote_args, w.concurrency, w.file_rows) == ({"num_cpus": 0.5}, 3, 192)
    assert w.remote_args == remote_args(decode)
    # after an actor (or a GPU task): its own one-CPU tasks, one per 8 CPUs, at least 2
    embed = _planned(gpus=1, cpus=1)
    assert write_stage([decode, embed], cpus=16, block=192, file_rows=1024) == \
        WriteStage({"num_cpus": 1}, 2, 1024)
    assert write_stage([decode, embed], cpus=64, block=192, file_rows=1024).concurrency == 8
    assert write_stage([_planned(gpus=0.5, step=0)], cpus=16, block=192, file_rows=1024).concurrency == 2
    # after a read fused into every stage: no bundling, so the read fuses in too, and a
    # task's rows go out in files of file_rows as they come (a task may read a big file)
    one_cpu = _planned(cpus=1, step=0)
    w = write_stage([one_cpu], cpus=16, block=192, file_rows=1024, fused_read=True)
    assert (w.file_rows, w.split_rows) == (None, 1024)
    w = write_stage([one_cpu, decode], cpus=16, block=192, file_rows=1024, fused_read=True)
    assert (w.file_rows, w.split_rows) == (192, None)
    assert write_stage([], cpus=2, block=256, file_rows=1024) == WriteStage({}, None, 256)


def _last_plan(plans):
    return [m for m in plans if m.startswith("Execution plan")][-1]


def test_decode_only_job_reads_decodes_and_writes_in_one_task(tmp_path, run_job_dict, ray_plans):
    """Small files: each task reads whole files, decodes them and writes their rows (Ray
    Data's own plan says so). So does a big file of small row groups, read in pieces of
    whole row groups. A big file of one row group is cut into blocks first; the write still
    runs in the decode tasks."""
    small, big, grouped = tmp_path / "small", tmp_path / "big.parquet", tmp_path / "grouped" / "big.parquet"
    write_image_parquet(small, 320, size=(16, 16), fmt="PNG", shards=20)
    bad = write_image_parquet(big, 315, size=(16, 16), fmt="PNG", with_bad=True)
    grouped.parent.mkdir()
    pq.write_table(pq.read_table(big), grouped, row_group_size=8)
    job = {"steps": [{"op": "decode_image", "batch_size": 8}], "output": {"path": str(tmp_path / "out")}}
    # 320 rows on 4 CPUs: blocks of 16 rows (two batches), as big as each small file
    s = run_job_dict(job | {"input": {"path": str(small), "id_column": "id"}})
    assert "[ReadParquet->MapBatches(_prepare)->MapBatches(DecodeImageTasks)->Write]" in _last_plan(ray_plans)
    files = sorted((tmp_path / "out" / "rows").glob("*.parquet"))
    sizes = [pq.read_metadata(f).num_rows for f in files]
    assert s.rows == 320 and sum(sizes) == 320 and len(files) == 20 and set(sizes) == {16}
    # every row's decode was reported, batch by batch: 40 batches of 8 in 20 tasks
    assert s.steps["steps[0] decode_image"]["rows"] == 320
    # the same files bigger than a block (8 rows): 20 files keep 4 CPUs busy, so each is
    # read whole in a task, decoded and written in files of block_rows as its rows come
    s = run_job_dict(job | {"input": {"path": str(small), "id_column": "id", "block_rows": 8}}, overwrite=True)
    assert "[ReadParquet->MapBatches(_prepare)->MapBatches(DecodeImageTasks)->Write]" in _last_plan(ray_plans)
    sizes = [pq.read_metadata(f).num_rows for f in (tmp_path / "out" / "rows").glob("*.parquet")]
    assert s.rows == 320 and sum(sizes) == 320 and len(sizes) == 40 and set(sizes) == {8}
    s = run_job_dict(job | {"input": {"path": str(big), "id_column": "id"}}, overwrite=True)
    plan = _last_plan(ray_plans)
    assert "MapBatches(DecodeImageTasks)->Write]" in plan and "ReadParquet->MapBatches" not in plan, plan
    sizes = [pq.read_metadata(f).num_rows for f in (tmp_path / "out" / "rows").glob("*.parquet")]
    # one file cut into blocks of 16 rows, a file per task of a block or so, not one 320-row file
    assert s.rows == 315 and s.errors == len(bad) == 5 and sum(sizes) == 315 and len(sizes) >= 4 and max(sizes) < 160
    s = run_job_dict(job | {"input": {"path": str(grouped.parent), "id_column": "id"}}, overwrite=True)
    assert "[ReadParquetRowGroups->MapBatches(_prepare)->MapBatches(DecodeImageTasks)->Write]" in _last_plan(ray_plans)
    rows, errors = (read(tmp_path / "out" / sub) for sub in ("rows", "errors"))
    assert sorted(errors.column("id").to_pylist()) == sorted(bad)
    assert rows.num_rows == s.rows == 315 and len(set(rows.column("id").to_pylist())) == 315
    # 20 tasks of two row groups (16 rows) each, one file each (the bad rows: errors/)
    sizes = [pq.read_metadata(f).num_rows for f in (tmp_path / "out" / "rows").glob("*.parquet")]
    assert len(sizes) == 20 and max(sizes) <= 16


def test_fused_read_gives_the_rows_and_errors_of_the_staged_one(tmp_path, tiny_models, run_job_dict, ray_plans):
    """decode -> embed over small files with bad rows: read, decode and the embed's prepare
    in one task (batched by the stages themselves) give the error rows and embeddings of the
    same job run stage by stage (decode at 0.5 CPU: Ray Data then keeps the stages apart).
    So do the same 20 files read one per task, once each is bigger than a block (blocks of
    8 rows): 20 files keep 4 CPUs busy, and the embed actor takes the rows on."""
    data = tmp_path / "data"
    bad = write_image_parquet(data, 315, size=(24, 24), shards=20, with_bad=True)  # 20 files of 16 rows
    clip = str(tiny_models("clip"))

    def run(decode_cpus, out, block_rows=1024):
        decode = {"op": "decode_image", "batch_size": 8, "resources": {"cpus": decode_cpus}}
        s = run_job_dict({"input": {"path": str(data), "id_column": "id", "block_rows": block_rows},
                          "steps": [decode, {"op": "embed", "model": clip, "batch_size": 8}],
                          "output": {"path": str(tmp_path / out)}})
        rows, errors = read(tmp_path / out / "rows"), read(tmp_path / out / "errors")
        return s, _last_plan(ray_plans), rows.sort_by("id"), errors.sort_by("id")

    s2, plan2, rows2, errors2 = run(0.5, "staged")
    assert "TaskPoolMapOperator[MapBatches(DecodeImageTasks)] -> " in plan2, plan2
    e2 = np.array(rows2.column("image_embedding").to_pylist(), dtype=np.float32)
    for args in ((1, "fused"), (1, "fused-files", 8)):
        s1, plan1, rows1, errors1 = run(*args)
        # one task from the read to the model's input, cut into blocks of its batch size
        assert ("[ReadParquet->MapBatches(_prepare)->MapBatches(DecodeImage+EmbedPrepareTasks)->"
                "StreamingRepartition[num_rows_per_block=8,strict=False]] -> ActorPoolMapOperator") in plan1, plan1
        assert s1.rows == s2.rows == 315 and s1.errors == s2.errors == len(bad) == 5
        assert errors1.column("id").to_pylist() == errors2.column("id").to_pylist() == sorted(bad)
        assert errors1.column("error").to_pylist() == errors2.column("error").to_pylist()
        assert rows1.column("id").to_pylist() == rows2.column("id").to_pylist()
        e1 = np.array(rows1.column("image_embedding").to_pylist(), dtype=np.float32)
        np.testing.assert_allclose(e1, e2, atol=1e-6)
