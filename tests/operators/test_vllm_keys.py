"""backend: vllm without vLLM: the keys, what validation asks for, the sampling mapping.
(The engine itself is tested in tests/vllm/, in the venv that has vLLM.)"""

from __future__ import annotations

import importlib.util

import pytest
from PIL import Image
from pydantic import ValidationError

from mmbatch.operators.answer import Answer, AnswerConfig
from mmbatch.operators.caption import Caption, CaptionConfig
from mmbatch.operators.vllm_backend import row_seed, sampling_kwargs


def test_vllm_keys_are_checked():
    assert CaptionConfig(model="m").backend == "transformers"
    with pytest.raises(ValidationError, match="only with backend: vllm"):
        AnswerConfig(model="m", tensor_parallel_size=2)
    with pytest.raises(ValidationError, match="no beam search"):
        AnswerConfig(model="m", backend="vllm", num_beams=3)
    with pytest.raises(ValidationError, match="preprocess: tasks does not apply"):
        CaptionConfig(model="m", backend="vllm", preprocess="tasks")
    op = Caption(CaptionConfig(model="m", backend="vllm"))
    assert op.prepared() == {}  # vLLM runs the processor itself: no prepare stage
    assert Caption(CaptionConfig(model="m")).prepared()


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed here")
def test_a_missing_vllm_names_its_extra():
    problems = Answer(AnswerConfig(model="m", backend="vllm")).requirements().problems()
    assert problems == ["Python package 'vllm' is missing: pip install 'mmbatch[vllm]'"]
    assert not Answer(AnswerConfig(model="m")).requirements().problems()


def test_sampling_maps_the_generation_keys():
    greedy = sampling_kwargs(AnswerConfig(model="m", backend="vllm", max_new_tokens=7, min_new_tokens=2))
    assert greedy == {"max_tokens": 7, "min_tokens": 2, "temperature": 0.0}
    sampled = sampling_kwargs(
        AnswerConfig(model="m", backend="vllm", do_sample=True, top_p=0.9, repetition_penalty=1.2)
    )
    assert sampled == {"max_tokens": 30, "min_tokens": 0, "temperature": 1.0, "top_p": 0.9, "repetition_penalty": 1.2}


def test_row_seeds_follow_the_seed_prompt_and_pixels():
    red, blue = Image.new("RGB", (4, 4), "red"), Image.new("RGB", (4, 4), "blue")
    seed = row_seed(1, "q", [red])
    assert seed == row_seed(1, "q", [red.copy()]) and 0 <= seed < 2**63
    assert len({seed, row_seed(2, "q", [red]), row_seed(1, "p", [red]), row_seed(1, "q", [blue])}) == 4
