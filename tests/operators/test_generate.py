"""generate (+ canny): images equal the diffusers pipeline called directly with the same seeds,
do not depend on the batch a row lands in, and bad rows are accounted for."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from mmbatch.core.columns import to_arrow
from mmbatch.testing.images import synthetic_image

from .helpers import make_op

JOBS = Path(__file__).parents[2] / "jobs"
PROMPTS = ["a red square", "a blue circle on a green background", "two dogs", "a cat"]
SEEDS = [11, 22, 33, 44]
STEPS = 2


def decode(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def direct(pipe, prompts, seeds, **kw) -> list[np.ndarray]:
    import torch

    generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
    images = pipe(prompts, generator=generators, num_inference_steps=STEPS, **kw).images
    return [np.asarray(im) for im in images]


@pytest.fixture(scope="module")
def sd(tiny_models):
    return str(tiny_models("stable_diffusion"))


def generated(op, table) -> list[np.ndarray | None]:
    out = op(table)
    return [None if b is None else decode(b) for b in out.column("image").to_pylist()]


def test_images_bit_identical_to_the_pipeline_with_the_same_seeds(sd):
    from diffusers import StableDiffusionPipeline

    op = make_op("generate", model=sd, num_inference_steps=STEPS, guidance_scale=5.0, negative_prompt="neg")
    table = pa.table({"prompt": PROMPTS, "seed": SEEDS, "neg": ["blurry", None, "", "ugly"]})
    out = op(table)
    assert out.column("error").null_count == 4
    assert out.column("image_width").to_pylist() == [32] * 4
    assert out.column("image_seed").to_pylist() == SEEDS
    got = [decode(b) for b in out.column("image").to_pylist()]

    pipe = StableDiffusionPipeline.from_pretrained(sd)
    pipe.set_progress_bar_config(disable=True)
    want = direct(pipe, PROMPTS, SEEDS, guidance_scale=5.0, negative_prompt=["blurry", "", "", "ugly"])
    for g, w in zip(got, want, strict=True):
        assert np.array_equal(g, w)
    assert not np.array_equal(got[0], got[1])


def test_a_row_gives_the_same_image_at_batch_sizes_1_and_4(sd):
    table = pa.table({"prompt": PROMPTS, "seed": SEEDS})
    exact = make_op("generate", model=sd, num_inference_steps=STEPS, batch_invariant=True)
    batch4 = generated(exact, table)
    batch1 = [generated(exact, table.slice(i, 1))[0] for i in range(4)]
    for a, b in zip(batch4, batch1, strict=True):
        assert np.array_equal(a, b)
    # batched (the default): the same noise; batched kernels may round the last float bit differently
    batched = generated(make_op("generate", model=sd, num_inference_steps=STEPS), table)
    for a, b in zip(batched, batch1, strict=True):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    # a row moved to another position of another batch still gets its image
    shuffled = generated(exact, pa.table({"prompt": PROMPTS[::-1], "seed": SEEDS[::-1]}))
    assert all(np.array_equal(a, b) for a, b in zip(shuffled[::-1], batch4, strict=True))


def test_derived_seeds_empty_prompts_and_saved_files(sd, tmp_path):
    from mmbatch.operators.generate import derived_seed

    op = make_op("generate", model=sd, num_inference_steps=STEPS, save_dir=str(tmp_path / "png"), height=48, width=40)
    table = pa.table({"id": ["a", "b/1", "c", "d"], "prompt": ["a cat", "a dog", "  ", "a cow"], "seed": [None, 5, 6, None]})
    out = op(table)
    errors = out.column("error").to_pylist()
    assert errors[2] == "generate: empty prompt" and errors.count(None) == 3
    assert out.column("image_seed").to_pylist() == [derived_seed("a"), 5, None, derived_seed("d")]
    assert (out.column("image_width").to_pylist(), out.column("image_height").to_pylist()) == (
        [40, 40, None, 40], [48, 48, None, 48])
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == ["a.png", "b_1.png", "d.png"]
    assert (tmp_path / "png" / "a.png").read_bytes() == out.column("image")[0].as_py()
    # the same row alone (its seed derived from its id again) gives the same image
    again = op(table.slice(3, 1).drop_columns(["seed"]))
    assert again.column("image")[0].as_py() == out.column("image")[3].as_py()


def test_out_of_memory_is_an_actionable_row_error(sd, monkeypatch):
    import torch

    op = make_op("generate", model=sd, num_inference_steps=STEPS)

    def oom(**kw):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 40.00 GiB")

    monkeypatch.setattr(op, "pipe", oom)
    out = op(pa.table({"prompt": PROMPTS[:2], "seed": SEEDS[:2]}))
    errors = out.column("error").to_pylist()
    assert all("out of memory generating 1 image(s)" in e and "attention_slicing" in e for e in errors)


def test_controlnet_canny_matches_the_controlnet_pipeline(sd, tiny_models):
    import cv2
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline
    from PIL import Image

    cn = str(tiny_models("controlnet"))
    images = [np.asarray(synthetic_image(i, (32, 32))) for i in range(3)]
    canny = make_op("canny")
    table = canny(pa.table({"pixels": to_arrow(images), "prompt": PROMPTS[:3], "seed": SEEDS[:3]}))
    edges = [np.repeat(cv2.Canny(im, 100, 200)[:, :, None], 3, axis=2) for im in images]
    assert edges[0].max() == 255  # the shapes have edges
    op = make_op("generate", model=sd, controlnet=cn, num_inference_steps=STEPS, scheduler="EulerDiscreteScheduler")
    assert type(op.pipe).__name__ == "StableDiffusionControlNetPipeline"
    got = generated(op, table)

    from diffusers import EulerDiscreteScheduler

    pipe = StableDiffusionControlNetPipeline.from_pretrained(sd, controlnet=ControlNetModel.from_pretrained(cn))
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    want = direct(pipe, PROMPTS[:3], SEEDS[:3], image=[Image.fromarray(e) for e in edges])
    for g, w in zip(got, want, strict=True):
        assert np.array_equal(g, w)


def test_bad_config_values_fail_validation():
    from mmbatch.operators.generate import GenerateConfig

    with pytest.raises(ValueError, match="multiple"):
        GenerateConfig(model="m", height=50)
    with pytest.raises(ValueError, match="pattern"):
        GenerateConfig(model="m", scheduler="not a class")


@pytest.mark.slow
def test_generate_images_job_end_to_end(tiny_models, ray_session, tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    from mmbatch.pipelines.run import run_job
    from mmbatch.pipelines.spec import load_job

    ids = [f"p-{i}" for i in range(6)] + ["bad-empty"]
    prompts = [f"a {c} square" for c in ("red", "blue", "green", "pink", "gray", "black")] + [""]
    pq.write_table(pa.table({"id": ids, "prompt": prompts}), tmp_path / "prompts.parquet")
    for var, value in {
        "GEN_INPUT": tmp_path / "prompts.parquet", "GEN_MODEL": tiny_models("stable_diffusion"),
        "GEN_OUTPUT": tmp_path / "out", "GEN_STEPS": 2, "GEN_SIZE": 32, "CLIP_MODEL": tiny_models("clip"),
    }.items():
        monkeypatch.setenv(var, str(value))
    summary = run_job(load_job(JOBS / "generate_images.yaml"))
    assert (summary.input_rows, summary.rows, summary.errors) == (7, 6, 1)
    assert sorted(p.name for p in (tmp_path / "out" / "images").iterdir()) == [f"p-{i}.png" for i in range(6)]
    assert [m["metric"] for m in summary.metrics] == ["clip_score"] and summary.metrics[0]["count"] == 6
