"""backend: vllm against the transformers backend on the same tiny LLaVA (fp32, CPU): greedy
answers and captions equal, per-row seeds, and the requests vLLM refuses as error rows.

These need vLLM (marked ``vllm``; skipped where it is not installed). CI runs them in their
own venv (README, "The vLLM backend"): vLLM pins its own torch and transformers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from mmbatch.core.columns import to_arrow
from mmbatch.operators.answer import Answer
from mmbatch.operators.vllm_backend import VllmEngine
from mmbatch.testing.images import encode, synthetic_image
from mmbatch.testing.vlm import vqa_rows

from ..operators.helpers import make_op

pytestmark = pytest.mark.vllm

N = 8
MAX_NEW = 8


def vqa_table(n: int = N) -> pa.Table:
    images = [[encode(synthetic_image(i, (48, 40)))] for i in range(n)]
    return pa.table({"images": images, "question": [vqa_rows(i)[0] for i in range(n)]})


@pytest.fixture(scope="module")
def llava(tiny_models: Any) -> str:
    return str(tiny_models("llava_vllm"))


@pytest.fixture(scope="module")
def answer_ops(llava: str) -> tuple[Any, Any]:
    keys = dict(model=llava, image="images", max_new_tokens=MAX_NEW)
    return make_op("answer", **keys), make_op("answer", **keys, backend="vllm", max_model_len=256)


def test_greedy_answers_equal_the_transformers_backend(answer_ops):
    hf, vllm = answer_ops
    table = vqa_table()
    want = hf(table).column("answer").to_pylist()
    out = vllm(table)
    assert out.column("error").to_pylist() == [None] * N
    got = out.column("answer").to_pylist()
    assert all(want) and len(set(want)) > 1  # answers that depend on the row
    assert got == want


def test_greedy_captions_equal_the_transformers_backend(llava):
    pixels = [np.asarray(synthetic_image(i, (48, 40))) for i in range(4)]
    table = pa.table({"pixels": to_arrow(pixels)})
    keys = dict(model=llava, prompt="Describe the image.", max_new_tokens=MAX_NEW)
    want = make_op("caption", **keys)(table).column("caption").to_pylist()  # preprocess: tasks
    got = make_op("caption", **keys, backend="vllm", max_model_len=256)(table).column("caption").to_pylist()
    assert all(want) and got == want


def sampler(op: Any, **keys: Any) -> Answer:
    """An answer step sampling with ``keys`` on the engine ``op`` already started."""
    cfg = op.config.model_copy(update={"do_sample": True, **keys})
    new = Answer(cfg)
    new.processor, new.chat, new.by_length = op.processor, op.chat, op.by_length
    new.engine = VllmEngine(new, op.engine.llm)
    return new


def test_sampling_seeds_are_per_row(answer_ops):
    _, vllm = answer_ops
    table = vqa_table()
    first = sampler(vllm, temperature=1.5, seed=3)(table).column("answer").to_pylist()
    order = list(reversed(range(N)))
    again = sampler(vllm, temperature=1.5, seed=3)(table.take(order)).column("answer").to_pylist()
    assert [again[order.index(i)] for i in range(N)] == first  # same row, same sample, any batch position
    other = sampler(vllm, temperature=1.5, seed=4)(table).column("answer").to_pylist()
    greedy = vllm(table).column("answer").to_pylist()
    assert other != first and first != greedy


def test_refused_requests_are_error_rows(answer_ops):
    hf, vllm = answer_ops
    table = vqa_table(4)
    images = table.column("images").to_pylist()
    questions = table.column("question").to_pylist()
    images[1] = images[1] * 2  # two images: the engine makes room for one (max_images)
    questions[2] = "why " * 300  # over max_model_len 256
    bad = pa.table({"images": images, "question": questions})
    out = vllm(bad)
    errors = out.column("error").to_pylist()
    assert errors[0] is None and errors[3] is None
    assert errors[1] and "image" in errors[1], errors[1]
    assert errors[2] and "length" in errors[2], errors[2]
    answers = out.column("answer").to_pylist()
    want = hf(table).column("answer").to_pylist()
    assert [answers[0], answers[3]] == [want[0], want[3]] and answers[1] is None and answers[2] is None


def test_shipped_vllm_job_validates():
    from pathlib import Path

    from mmbatch.pipelines.spec import load_job

    job = load_job(Path(__file__).parents[2] / "jobs" / "vqa_vllm.yaml")
    (answer,) = [s for s in job.steps if s.op == "answer"]
    assert answer.config.backend == "vllm"
