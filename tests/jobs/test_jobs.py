"""Every shipped job file validates (keys, ops, columns) without loading a model."""

import importlib.util
from pathlib import Path

import pytest

from mmbatch.pipelines.spec import JobSpecError, load_job

JOBS = sorted((Path(__file__).parents[2] / "jobs").glob("*.yaml"))


def test_there_are_job_files():
    assert any(p.name == "quickstart.yaml" for p in JOBS)


@pytest.mark.parametrize("path", JOBS, ids=[p.name for p in JOBS])
def test_job_file_validates_and_documents_its_command(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# Run:") and "mmbatch" in first, f"{path.name} must open with '# Run: mmbatch ...'"
    if "backend: vllm" in path.read_text() and importlib.util.find_spec("vllm") is None:
        # validation checks the step's packages: without vLLM it names the extra to install
        # (the file validates in the vLLM venv: tests/vllm/)
        with pytest.raises(JobSpecError, match=r"'vllm' is missing: pip install 'mmbatch\[vllm\]'"):
            load_job(path)
        return
    job = load_job(path)
    assert job.name
    for step in job.steps:
        step.build()  # builds the operator object (declared columns) without setup(): no model loaded


def test_every_job_file_named_in_the_docs_exists(capsys):
    import re

    from mmbatch.pipelines.cli import main

    with pytest.raises(SystemExit):
        main(["--help"])
    texts = {"mmbatch --help": capsys.readouterr().out, "README.md": (Path(__file__).parents[2] / "README.md").read_text()}
    shipped = {p.name for p in JOBS}
    for where, text in texts.items():
        named = set(re.findall(r"jobs/([A-Za-z0-9_]+\.yaml)", text))
        assert named, f"{where} names no job file"
        assert named <= shipped, f"{where} names job files that do not exist: {sorted(named - shipped)}"
