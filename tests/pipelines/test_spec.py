import textwrap

import pytest

from mmbatch.pipelines.spec import (
    JobSpecError,
    apply_override,
    check_columns,
    interpolate,
    job_from_dict,
    load_job,
    source_columns,
)


def write(tmp_path, text):
    p = tmp_path / "job.yaml"
    p.write_text(textwrap.dedent(text))
    return p


BASE = """
name: t
input: {path: data.parquet, columns: [id, image]}
steps:
  - op: decode_image
  - op: caption
    model: some/model
    max_new_tokens: 5
output: {path: out}
"""


def test_valid_job_builds_steps_with_resources_and_batch_size(tmp_path):
    job = load_job(write(tmp_path, BASE), ["steps.1.batch_size=8", "steps.1.resources.gpus=0.25"])
    assert [s.op for s in job.steps] == ["decode_image", "caption"]
    assert job.steps[1].batch_size == 8
    assert job.steps[1].resources.gpus == 0.25
    assert job.steps[1].config.max_new_tokens == 5


def test_typo_names_file_step_key_and_valid_keys(tmp_path):
    p = write(tmp_path, BASE.replace("max_new_tokens", "max_new_token"))
    with pytest.raises(JobSpecError) as e:
        load_job(p)
    msg = str(e.value)
    assert str(p) in msg and "steps[1] (op: caption)" in msg and "unknown key 'max_new_token'" in msg
    assert "max_new_tokens" in msg and "resources" in msg  # the valid keys are listed


def test_unknown_op_top_level_key_and_resources_key(tmp_path):
    with pytest.raises(JobSpecError, match=r"steps\[0\].*unknown op 'decode_imag'"):
        load_job(write(tmp_path, BASE.replace("op: decode_image", "op: decode_imag")))
    with pytest.raises(JobSpecError, match="unknown key 'outptu'"):
        load_job(write(tmp_path, BASE.replace("output:", "outptu:")))
    with pytest.raises(JobSpecError, match=r"resources.*unknown key 'gpu'"):
        load_job(write(tmp_path, BASE), ["steps.1.resources.gpu=1"])
    with pytest.raises(JobSpecError, match="batch_size must be a positive integer"):
        load_job(write(tmp_path, BASE), ["steps.1.batch_size=0"])


def test_column_chaining_and_id_column_are_checked_before_launch(tmp_path):
    bad = BASE.replace("  - op: decode_image\n", "")
    with pytest.raises(JobSpecError, match=r"steps\[0\] \(op: caption\) reads column\(s\) 'pixels'"):
        load_job(write(tmp_path, bad))
    with pytest.raises(JobSpecError, match="id_column 'key' is not a source column"):
        load_job(write(tmp_path, BASE), ["input.id_column=key"])
    job = load_job(write(tmp_path, BASE.replace(", columns: [id, image]", "")))  # unknown columns: later
    with pytest.raises(JobSpecError, match="reads column"):
        check_columns(job, ["id", "picture"])


def test_decode_on_device_reads_the_encoded_column_itself_and_not_with_vllm(tmp_path):
    """caption (as embed and classify) with decode_on_device reads the source's bytes
    column without a decode_image step; vLLM, which runs its own processor, refuses it."""
    direct = BASE.replace("  - op: decode_image\n", "").replace("max_new_tokens: 5", "max_new_tokens: 5\n    image: image\n"
                                                                   "    decode_on_device: true")
    job = load_job(write(tmp_path, direct))
    assert [s.op for s in job.steps] == ["caption"] and job.steps[0].build().media_inputs() == {"image"}
    with pytest.raises(JobSpecError, match=r"steps\[0\] \(op: caption\).*decode_on_device.*decode_image step instead"):
        load_job(write(tmp_path, direct.replace("max_new_tokens: 5", "max_new_tokens: 5\n    backend: vllm")))


def test_env_interpolation_and_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA", "s3://bucket/x")
    assert interpolate("${DATA}/a ${NOPE:-def}") == "s3://bucket/x/a def"
    with pytest.raises(JobSpecError, match=r"\$\{NOPE\} is not set"):
        interpolate("${NOPE}")
    data = {"steps": [{"op": "a"}], "input": {}}
    apply_override(data, "steps.0.batch_size=4")
    apply_override(data, "input.columns=[a, b]")
    assert data == {"steps": [{"op": "a", "batch_size": 4}], "input": {"columns": ["a", "b"]}}
    with pytest.raises(JobSpecError, match="no list item 3"):
        apply_override(data, "steps.3.op=x")


@pytest.mark.parametrize("fmt, column, op", [
    ("images", "image", "decode_image"), ("audio", "audio", "decode_audio"), ("video", "video", "decode_video"),
])
def test_file_formats_provide_path_and_bytes_columns(fmt, column, op):
    def job(step_column):
        return job_from_dict({
            "name": "f", "input": {"path": "x/", "format": fmt, "id_column": "path"},
            "steps": [{"op": op, "column": step_column}], "output": {"path": "o"},
        })

    assert source_columns(job(column)) == ["path", column]
    available = ", ".join(sorted(["path", column]))
    with pytest.raises(JobSpecError, match=rf"reads column\(s\) 'bytes'.*\(available: {available}\)"):
        job("bytes")  # the reader's own column name is not what steps see


def test_unknown_input_format_names_the_known_ones():
    with pytest.raises(JobSpecError, match="unknown format 'tar'; known formats: parquet, images, audio, video"):
        job_from_dict({"name": "f", "input": {"path": "x/", "format": "tar"}, "steps": [], "output": {"path": "o"}})

def test_a_step_without_batch_size_gets_its_operators_default_for_where_it_runs():
    """On GPUs the model steps that run the largest sub-batch that fits default to 256 rows
    (a batch of 16 leaves an H100 mostly idle); on CPUs, and under ``--cpu``, their CPU
    default; a batch_size the job sets wins everywhere. A prepare stage runs its model's."""
    from mmbatch.pipelines.planning import plan_steps

    job = job_from_dict({
        "name": "t", "input": {"path": "x", "columns": ["id", "image", "question"]}, "output": {"path": "o"},
        "steps": [{"op": "decode_image", "resources": {"gpus": 1}},
                  {"op": "caption", "model": "m", "resources": {"gpus": 1}},
                  {"op": "embed", "model": "m", "resources": {"gpus": 0.5}, "batch_size": 8},
                  {"op": "classify", "model": "m"},
                  {"op": "answer", "model": "m", "question": "question", "resources": {"gpus": 0.25}}],
    })
    assert [s.batch_size for s in job.steps] == [None, None, 8, None, None]  # as the job sets them
    on_gpus = {p.name: p.batch_size for p in plan_steps(job)}
    assert on_gpus == {
        "steps[0] decode_image": 64,  # no GPU default: a CPU step's batch
        "steps[1] caption: prepare": 256, "steps[1] caption": 256,
        "steps[2] embed: prepare": 8, "steps[2] embed": 8,
        "steps[3] classify: prepare": 32, "steps[3] classify": 32,  # no GPUs asked for
        "steps[4] answer: prepare": 256, "steps[4] answer": 256,
    }
    on_cpus = {p.name: p.batch_size for p in plan_steps(job, cpu_only=True)}
    assert on_cpus["steps[1] caption"] == on_cpus["steps[1] caption: prepare"] == 16
    assert on_cpus["steps[2] embed"] == 8 and on_cpus["steps[4] answer"] == 16
