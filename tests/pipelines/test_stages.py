"""Stage groups: consecutive stateless CPU stages run as one Ray Data stage, each batch going
straight from one to the next, so a model step after them gets whole batches."""

import pyarrow as pa

from mmbatch.pipelines.executor import stage_groups
from mmbatch.pipelines.stages import rebatch
from mmbatch.testing.images import write_image_parquet

from .test_run import _last_plan, _planned


def _ids(start: int, n: int) -> pa.Table:
    return pa.table({"id": list(range(start, start + n))})


def test_rebatch_cuts_batches_across_tables_in_order():
    # the blocks Ray Data cut decoded 640x480 pixels into at its 32 MiB block cap
    tables = [_ids(0, 37), _ids(37, 37), _ids(74, 51)]
    batches = list(rebatch(tables, 32))
    assert [b.num_rows for b in batches] == [32, 32, 32, 29]
    assert pa.concat_tables(batches).column("id").to_pylist() == list(range(125))
    # empty tables in between are skipped; the rows still come out in order
    batches = list(rebatch([_ids(0, 0), _ids(0, 5), _ids(5, 0), _ids(5, 3)], 4))
    assert [b.column("id").to_pylist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    # no rows at all: the first (empty) table, once, so that the stage still gives its columns
    (only,) = rebatch([_ids(0, 0), _ids(0, 0)], 8)
    assert only.num_rows == 0 and only.column_names == ["id"]
    assert list(rebatch([], 8)) == []


def test_consecutive_cpu_task_stages_form_one_group():
    decode, embed = _planned(step=0), _planned(step=1)
    prepare = _planned(step=1)
    prepare.prepare = True
    capped = _planned(cpus=0.5, concurrency=3, step=0)
    assert stage_groups([decode, prepare, embed]) == [[decode, prepare], [embed]]
    # a stage with other resources or a cap stays apart (Ray Data would not fuse it either)
    assert stage_groups([capped, prepare, embed]) == [[capped], [prepare], [embed]]
    assert stage_groups([embed, decode, prepare]) == [[embed], [decode, prepare]]


def test_model_step_gets_whole_batches_when_decoded_rows_are_big(tmp_path, tiny_models, run_job_dict):
    """3 files of 16 photos of 1280x960 (3.7 MB a row decoded), batch 16: one block per file.
    Ray Data cuts a block of decoded rows at its 32 MiB cap (9 + 7 rows); with decoding and
    the embed's prepare stage in one group, the pixels go straight from one to the other, and
    both the prepare stage and the model run 3 batches of 16, not 6 of 9 and 7."""
    write_image_parquet(tmp_path / "data", 48, size=(1280, 960), shards=3)
    s = run_job_dict({
        "input": {"path": str(tmp_path / "data"), "id_column": "id"},
        "steps": [{"op": "decode_image", "batch_size": 16},
                  {"op": "embed", "model": str(tiny_models("clip")), "batch_size": 16}],
    })
    assert s.rows == 48 and s.errors == 0
    prepare, embed = s.steps["steps[1] embed: prepare"], s.steps["steps[1] embed"]
    assert prepare["rows"] == embed["rows"] == 48
    assert prepare["batches"] == embed["batches"] == 3
    assert "steps[1] embed: 48 rows in 3 batches," in s.render()


def test_model_batches_bigger_than_the_block_cap_stay_whole(tmp_path, run_job_dict):
    """2 files of 192 photos, decoded in batches of 192 and prepared for a CLIP of 224 px in
    batches of 96 (602 KB a row: 58 MB a batch). Ray Data cuts a task's output at its block
    cap (56, 56 and 80 rows); re-formed into blocks of the model's batch, the model runs 4
    batches of 96 and not 6."""
    from mmbatch.testing.vision import build_tiny_clip

    clip = build_tiny_clip(tmp_path / "clip224", image_size=224, patch_size=32, hidden_size=16, num_layers=1)
    write_image_parquet(tmp_path / "data", 384, size=(224, 224), shards=2)
    s = run_job_dict({
        "input": {"path": str(tmp_path / "data"), "id_column": "id"},
        "steps": [{"op": "decode_image", "batch_size": 192},
                  {"op": "embed", "model": str(clip), "batch_size": 96}],
    })
    assert s.rows == 384 and s.errors == 0
    assert s.steps["steps[1] embed: prepare"]["batches"] == s.steps["steps[1] embed"]["batches"] == 4


def test_model_gets_exact_batches_from_files_read_a_few_per_block(tmp_path, tiny_models, run_job_dict, ray_plans):
    """60 audio files, which Ray Data reads a few per block, in blocks that need not be whole
    batches (5 rows each on 2 CPUs, where the bulk ASR benchmark's transcribe step ran 16 + 4
    rows per two blocks; 8 here); decode in batches of 8, transcribe in batches of 16: the
    decode tasks take bundles of 16 rows, and the repartition after them is strict and fused
    into them, so Ray Data cuts their input across blocks into exact model batches."""
    from mmbatch.testing.audio import write_audio_folder

    write_audio_folder(tmp_path / "audio", 60, formats=("wav",), durations=(0.3, 0.6))
    s = run_job_dict({
        "input": {"path": str(tmp_path / "audio"), "format": "audio", "id_column": "path"},
        "steps": [{"op": "decode_audio", "batch_size": 8},
                  {"op": "transcribe", "model": str(tiny_models("whisper_ct2")), "backend": "ctranslate2",
                   "batched": True, "max_new_tokens": 2, "batch_size": 16}],
        "output": {"path": str(tmp_path / "out"), "drop": ["audio"]},
    })
    assert s.rows == 60 and s.errors == 0
    assert "MapBatches(DecodeAudioTasks)->StreamingRepartition[num_rows_per_block=16,strict=True]] -> " \
        "ActorPoolMapOperator[MapBatches(TranscribeActor)]" in _last_plan(ray_plans)
    assert s.steps["steps[0] decode_audio"]["batches"] == 8
    assert s.steps["steps[1] transcribe"]["batches"] == 4
