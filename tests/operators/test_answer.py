"""answer: BLIP VQA, a LLaVA chat-template model and multi-image Idefics2 prompts, each checked
against the same tiny model called directly through transformers, one row at a time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from mmbatch.core.columns import to_arrow
from mmbatch.testing.images import encode, synthetic_image

from .helpers import make_op, prepare_stage

JOBS = Path(__file__).parents[2] / "jobs"

QUESTIONS = [
    "What is in the picture?",
    "Is there a red square in this image or not?",
    "What color?",
    "How many circles are there?",
    "Describe it.",
]
MAX_NEW = 8


def pixels(i: int) -> np.ndarray:
    return np.asarray(synthetic_image(i, (48, 40)))


def load(path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    return AutoModelForImageTextToText.from_pretrained(path).eval(), AutoProcessor.from_pretrained(path)


def chat_answer(model, processor, images, content) -> str:
    """The reference: one row, the processor's chat template, greedy, prompt tokens cut off."""
    prompt = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
    inputs = processor(images=[images], text=[prompt], return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=MAX_NEW, do_sample=False)
    return processor.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)[0].strip()


def test_blip_vqa_answers_equal_the_model_one_row_at_a_time(tiny_models):
    from PIL import Image
    from transformers import AutoModelForVisualQuestionAnswering, AutoProcessor

    path = tiny_models("blip_vqa")
    op = make_op("answer", model=str(path), max_new_tokens=MAX_NEW)
    table = pa.table({"pixels": to_arrow([pixels(i) for i in range(5)]), "question": QUESTIONS})
    got = op(table).column("answer").to_pylist()

    model = AutoModelForVisualQuestionAnswering.from_pretrained(path).eval()
    processor = AutoProcessor.from_pretrained(path)
    want = []
    for i, q in enumerate(QUESTIONS):
        inputs = processor(images=Image.fromarray(pixels(i)), text=q, return_tensors="pt")
        out = model.generate(**inputs, max_new_tokens=MAX_NEW)
        want.append(processor.batch_decode(out, skip_special_tokens=True)[0].strip())
    assert got == want
    assert len(set(want)) > 1  # the rows really differ, so a mix-up would show


def test_llava_chat_template_batched_with_left_padding(tiny_models):
    path = tiny_models("llava")
    op = make_op("answer", model=str(path), max_new_tokens=MAX_NEW)
    assert op.processor.tokenizer.padding_side == "left"
    table = pa.table({"pixels": to_arrow([pixels(i) for i in range(5)]), "question": QUESTIONS})
    out = op(table)
    assert out.column("error").null_count == 5
    model, processor = load(path)
    want = [
        chat_answer(model, processor, [synthetic_image(i, (48, 40))], [{"type": "image"}, {"type": "text", "text": q}])
        for i, q in enumerate(QUESTIONS)
    ]
    assert out.column("answer").to_pylist() == want
    assert len(set(want)) > 1


def test_question_template_and_bad_rows(tiny_models):
    op = make_op("answer", model=str(tiny_models("llava")), max_new_tokens=4, question="Is there a {label}?")
    assert set(op.inputs()) == {"pixels", "label"}
    table = pa.table(
        {
            "pixels": to_arrow([pixels(0), None, pixels(2), pixels(3)]),
            "label": ["cat", "dog", "", None],
        }
    )
    out = op(table)
    errors = out.column("error").to_pylist()
    answers = out.column("answer").to_pylist()
    assert answers[0] and errors[0] is None
    assert "pixels" in errors[1] and "null" in errors[1]  # missing image
    assert answers[2] and errors[2] is None  # "Is there a ?" is still a question
    assert "label" in errors[3]  # a template field is null
    assert sum(a is not None for a in answers) + sum(e is not None for e in errors) == 4
    op2 = make_op("answer", model=str(tiny_models("llava")), max_new_tokens=4)
    out2 = op2(pa.table({"pixels": to_arrow([pixels(0)]), "question": ["   "]}))
    assert "empty question" in out2.column("error")[0].as_py()


def test_idefics2_multi_image_interleaved_prompts(tiny_models):
    path = tiny_models("idefics2")
    op = make_op("answer", model=str(path), image="images", max_new_tokens=MAX_NEW, preprocess="worker")
    jpeg = [encode(synthetic_image(i, (48, 40)), "PNG") for i in range(4)]
    rows = [
        ([jpeg[0], jpeg[1]], "Compare <image> and <image>: which one is red?"),
        ([jpeg[2]], "What is in the picture?"),
        ([jpeg[3], jpeg[0], jpeg[1]], "Which of these is different?"),  # no markers: images first
        ([jpeg[0], None], "Compare <image> and <image>."),  # a missing image
        ([jpeg[0]], "Compare <image> and <image>."),  # markers do not match the images
    ]
    table = pa.table({"images": pa.array([r[0] for r in rows], pa.list_(pa.binary())), "question": [r[1] for r in rows]})
    out = op(table)
    errors = out.column("error").to_pylist()
    assert errors[:3] == [None, None, None]
    assert "image 1 of the row is missing" in errors[3]
    assert "2 <image> markers for 1 images" in errors[4]

    import io

    from PIL import Image

    model, processor = load(path)
    pil = [Image.open(io.BytesIO(b)).convert("RGB") for b in jpeg]
    want = [
        chat_answer(model, processor, [pil[0], pil[1]], [
            {"type": "text", "text": "Compare "}, {"type": "image"}, {"type": "text", "text": " and "},
            {"type": "image"}, {"type": "text", "text": ": which one is red?"},
        ]),
        chat_answer(model, processor, [pil[2]], [{"type": "image"}, {"type": "text", "text": "What is in the picture?"}]),
        chat_answer(model, processor, [pil[3], pil[0], pil[1]], [
            {"type": "image"}, {"type": "image"}, {"type": "image"},
            {"type": "text", "text": "Which of these is different?"},
        ]),
    ]
    assert out.column("answer").to_pylist()[:3] == want


def test_blip_rejects_several_images_per_row(tiny_models):
    op = make_op("answer", model=str(tiny_models("blip_vqa")), max_new_tokens=4)
    frames = np.stack([pixels(0), pixels(1)])  # e.g. decode_video frames: (N, H, W, 3)
    out = op(pa.table({"pixels": to_arrow([frames, pixels(2)]), "question": ["What?", "What?"]}))
    assert "one image per question" in out.column("error")[0].as_py()
    assert out.column("answer")[1].as_py()


@pytest.mark.parametrize("model", ["blip_vqa", "llava"])
def test_answer_prepared_in_tasks_equals_the_processor_in_the_worker(tiny_models, model):
    config = {"model": str(tiny_models(model)), "max_new_tokens": MAX_NEW, "question": "{q}"}
    frames = np.stack([pixels(5), pixels(6)])
    table = pa.table({
        "pixels": to_arrow([pixels(0), pixels(1), pixels(2), None, pixels(4), pixels(5), frames, pixels(7)]),
        "q": QUESTIONS[:3] + ["What?", "  ", QUESTIONS[3], "Which is red?", QUESTIONS[4]],
    })  # fmt: skip
    worker = make_op("answer", preprocess="worker", **config)(table)
    prepared = prepare_stage("answer", **config)(table)
    ids = prepared.column("_answer/input_ids").to_pylist()
    if model == "blip_vqa":  # questions of several lengths: the worker generates by groups of one length
        assert len({len(i) for i in ids if i is not None}) > 1
    out = make_op("answer", **config)(prepared.drop_columns(["pixels", "q"]))  # the worker reads no image
    answers, errors = out.column("answer").to_pylist(), out.column("error").to_pylist()
    want = worker.column("answer").to_pylist()
    assert answers[:6] + answers[7:] == want[:6] + want[7:] and sum(a is not None for a in answers) == 5
    assert len(set(answers) - {None}) > 1  # the rows really differ, so a mix-up would show
    want_errors = worker.column("error").to_pylist()
    assert errors[:6] == want_errors[:6] and errors[7] is None
    assert "input column 'pixels' is null" in errors[3] and "empty question" in errors[4]
    if model == "blip_vqa":  # several images: the same error both ways
        assert errors[6] == want_errors[6] and "one image per question" in errors[6]
    else:  # a chat model answers them in the worker only
        assert want_errors[6] is None and "set preprocess: worker" in errors[6]


def test_answer_refuses_to_prepare_in_tasks_what_the_processor_cannot_split(tiny_models):
    with pytest.raises(ValueError, match=r"Idefics2Processor.*cannot run in the prepare tasks.*set preprocess: worker"):
        prepare_stage("answer", model=str(tiny_models("idefics2")))


@pytest.mark.slow
def test_vqa_job_end_to_end(tiny_models, ray_session, tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    from mmbatch.pipelines.run import run_job
    from mmbatch.pipelines.spec import load_job
    from mmbatch.testing.vlm import write_vqa_parquet

    bad = write_vqa_parquet(tmp_path / "vqa.parquet", 12, with_bad=True)
    monkeypatch.setenv("VQA_INPUT", str(tmp_path / "vqa.parquet"))
    monkeypatch.setenv("VQA_MODEL", str(tiny_models("llava")))
    monkeypatch.setenv("VQA_OUTPUT", str(tmp_path / "out"))
    job = load_job(JOBS / "vqa.yaml", ["steps.1.max_new_tokens=4"])
    summary = run_job(job)
    assert (summary.input_rows, summary.rows, summary.errors) == (15, 12, len(bad))
    errors = pq.read_table(tmp_path / "out" / "errors")
    assert sorted(errors.column("id").to_pylist()) == sorted(bad)
    assert [m["metric"] for m in summary.metrics] == ["vqa_accuracy"]
    assert summary.metrics[0]["count"] == 12
