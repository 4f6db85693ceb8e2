import pytest

from mmbatch.pipelines.cli import main


def test_help_for_every_command(capsys):
    for argv in (["--help"], ["run", "--help"], ["validate", "--help"], ["plan", "--help"], ["quickstart", "--help"], ["metrics", "--help"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--resume" in out and "--address" in out and "KEY=VALUE" in out


def test_ops_and_metrics_list_every_entry_with_its_keys(capsys):
    from mmbatch.metrics import metric_names
    from mmbatch.operators.base import OPERATORS

    assert main(["ops", "-v"]) == 0
    out = capsys.readouterr().out
    assert all(f"{name}: " in out for name in OPERATORS.names())
    assert "PydanticUndefined" not in out
    caption = out.split("\ncaption: ")[1]
    assert caption.splitlines()[1] == "    batch_size: default 16 (256 where the step has GPUs) - rows per call of the step's workers"
    assert "    batch_size: default 64 - rows" in out.split("\ndecode_image: ")[1]  # no GPU default
    assert main(["metrics", "-v"]) == 0
    out = capsys.readouterr().out
    assert all(f"{name}: " in out for name in metric_names())
    assert "    reference_stats: default None - pytorch-fid" in out
    assert "wer: " in out and "[per-row: also a score step]" in out.split("wer: ")[1].splitlines()[0]


def test_validate_and_plan_print_steps_and_resources(tmp_path, capsys):
    from mmbatch.testing.images import write_image_parquet

    write_image_parquet(tmp_path / "data.parquet", 3)
    job = tmp_path / "job.yaml"
    job.write_text(
        f"name: c\ninput: {{path: {tmp_path}/data.parquet}}\nsteps:\n  - op: decode_image\n"
        "  - op: embed\n    model: m\n    resources: {gpus: 0.5, concurrency: [1, 4]}\n"
        f"output: {{path: {tmp_path}/out}}\n"
    )
    # validate probes like run: the model 'm' is neither a folder nor in the (offline) hub cache
    assert main(["validate", str(job)]) == 2
    err = capsys.readouterr().err
    assert "steps[1] (op: embed): model m: not a local folder, and not in the Hugging Face cache" in err
    assert main(["validate", "--no-probe", str(job)]) == 0
    assert main(["plan", str(job)]) == 0
    out = capsys.readouterr().out
    assert "OK (2 steps" in out
    assert "steps[1] embed: actors x1..4, cpus=1 gpus=0.5" in out
    assert "reads:  pixels" in out and "image_embedding" in out
    assert main(["plan", str(job), "--cpu"]) == 0
    assert "cpus=1 gpus=0, batch_size" in capsys.readouterr().out
    # overrides before and after the flags
    assert main(["plan", str(job), "steps.1.batch_size=3", "--cpu", "steps.0.batch_size=5"]) == 0
    out = capsys.readouterr().out
    assert "steps[1] embed: actors x1..4, cpus=1 gpus=0, batch_size=3" in out
    assert "steps[0] decode_image: tasks x1, cpus=1 gpus=0, batch_size=5" in out
    with pytest.raises(SystemExit):
        main(["plan", str(job), "--cpu", "--bogus"])


def test_errors_exit_2_with_a_message(tmp_path, capsys):
    job = tmp_path / "job.yaml"
    job.write_text("name: c\ninput: {path: nowhere.parquet}\nsteps: [{op: decode_image}]\noutput: {path: o}\n")
    assert main(["validate", str(job)]) == 2
    assert "cannot read input.path" in capsys.readouterr().err
    assert main(["validate", str(tmp_path / "missing.yaml")]) == 2
