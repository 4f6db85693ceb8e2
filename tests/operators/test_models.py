"""embed / classify / caption equal the same model called directly through transformers."""

import numpy as np
import pyarrow as pa
import pytest
import torch

from mmbatch.core.columns import column_to_python
from mmbatch.pipelines.summary import RunSummary
from mmbatch.testing.images import encode, synthetic_image

from .helpers import fits_on_device, make_op, prepare_stage, run_ops

TEXTS = ["a photo of a cat", "a red square", "a blue circle on a green field", "dog", ""]


@pytest.fixture(scope="module")
def images():
    return [synthetic_image(i, (72 + 8 * i, 64)) for i in range(5)]


@pytest.fixture(scope="module")
def decoded(images):
    table = pa.table({"id": [str(i) for i in range(5)], "image": [encode(im, "PNG") for im in images], "text": TEXTS})
    return make_op("decode_image")(table)


def test_embed_equals_clip_features(tiny_models, decoded, images):
    from transformers import CLIPModel, CLIPProcessor

    path = tiny_models("clip")
    out = make_op("embed", model=str(path), text="text")(decoded)
    model, proc = CLIPModel.from_pretrained(path).eval(), CLIPProcessor.from_pretrained(path)
    with torch.inference_mode():
        img = model.get_image_features(**proc(images=[np.asarray(i) for i in images], return_tensors="pt"))
        txt = model.get_text_features(**proc(text=TEXTS, padding=True, truncation=True, return_tensors="pt"))
    img = getattr(img, "pooler_output", img)
    txt = getattr(txt, "pooler_output", txt)
    ref_i = torch.nn.functional.normalize(img, dim=-1).numpy()
    ref_t = torch.nn.functional.normalize(txt, dim=-1).numpy()
    got_i = np.stack(column_to_python(out.column("image_embedding")))
    got_t = np.stack(column_to_python(out.column("text_embedding")))
    assert out.column("image_embedding").type == pa.list_(pa.float32(), 24)  # fixed_size_list<float32>[d]
    np.testing.assert_allclose(got_i, ref_i, atol=1e-6)
    np.testing.assert_allclose(got_t, ref_t, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(got_i, axis=1), 1.0, atol=1e-5)


def test_zero_shot_classify_equals_clip_logits(tiny_models, decoded, images):
    from transformers import CLIPModel, CLIPProcessor

    path = tiny_models("clip")
    labels = ["cat", "dog", "red square", "blue circle"]
    out = make_op("classify", model=str(path), labels=labels, top_k=2)(decoded)
    model, proc = CLIPModel.from_pretrained(path).eval(), CLIPProcessor.from_pretrained(path)
    prompts = [f"a photo of a {label}." for label in labels]
    with torch.inference_mode():
        logits = model(**proc(text=prompts, images=[np.asarray(i) for i in images], return_tensors="pt", padding=True)).logits_per_image
    probs = logits.softmax(-1)
    top = probs.topk(2, dim=-1)
    assert out.column("label_topk").to_pylist() == [[labels[j] for j in row] for row in top.indices.tolist()]
    np.testing.assert_allclose(np.array(out.column("label_scores").to_pylist()), top.values.numpy(), atol=1e-5)
    assert out.column("label").to_pylist() == [labels[j] for j in top.indices[:, 0].tolist()]


def test_classify_equals_vit_softmax(tiny_models, decoded, images):
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    path = tiny_models("vit_classifier")
    out = make_op("classify", model=str(path), top_k=3)(decoded)
    model = AutoModelForImageClassification.from_pretrained(path).eval()
    proc = AutoImageProcessor.from_pretrained(path)
    with torch.inference_mode():
        probs = model(**proc(images=[np.asarray(i) for i in images], return_tensors="pt")).logits.softmax(-1)
    top = probs.topk(3, dim=-1)
    names = [[model.config.id2label[j] for j in row] for row in top.indices.tolist()]
    assert out.column("label_topk").to_pylist() == names
    np.testing.assert_allclose(np.array(out.column("label_scores").to_pylist()), top.values.numpy(), atol=1e-5)


@pytest.mark.parametrize("prompt", [None, "a picture of"])
def test_caption_equals_blip_generate_row_by_row(tiny_models, decoded, images, prompt):
    from transformers import BlipForConditionalGeneration, BlipProcessor

    path = tiny_models("blip_captioner")
    kw = {"prompt": prompt} if prompt else {}
    out = make_op("caption", model=str(path), max_new_tokens=12, **kw)(decoded)
    model = BlipForConditionalGeneration.from_pretrained(path).eval()
    proc = BlipProcessor.from_pretrained(path)
    expected = []
    for im in images:
        inputs = proc(images=np.asarray(im), text=prompt, return_tensors="pt") if prompt else proc(
            images=np.asarray(im), return_tensors="pt")
        with torch.inference_mode():
            ids = model.generate(**inputs, max_new_tokens=12, num_beams=1, do_sample=False)
        expected.append(proc.decode(ids[0], skip_special_tokens=True).strip())
    assert out.column("caption").to_pylist() == expected
    assert any(expected)  # the tiny model says something, so equality means something


def test_caption_blip2_through_image_text_to_text(tiny_models, decoded, images):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = tiny_models("blip2")
    out = make_op("caption", model=str(path), max_new_tokens=6)(decoded)
    model = AutoModelForImageTextToText.from_pretrained(path).eval()
    proc = AutoProcessor.from_pretrained(path)
    expected = []
    for im in images:
        inputs = proc(images=np.asarray(im), return_tensors="pt")
        with torch.inference_mode():
            ids = model.generate(**inputs, max_new_tokens=6, do_sample=False)
        prompt_ids = inputs.get("input_ids")
        if prompt_ids is not None and bool((ids[:, : prompt_ids.shape[1]] == prompt_ids).all()):
            ids = ids[:, prompt_ids.shape[1]:]
        expected.append(proc.batch_decode(ids, skip_special_tokens=True)[0].strip())
    assert out.column("error").null_count == len(images)
    assert out.column("caption").to_pylist() == expected


@pytest.mark.parametrize(("model", "prompt"), [("blip_captioner", None), ("blip_captioner", "a picture of"),
                                               ("llava", "Describe the image.")])
def test_caption_prepared_in_tasks_equals_the_processor_in_the_worker(tiny_models, decoded, model, prompt):
    config = {"model": str(tiny_models(model)), "max_new_tokens": 8, "prompt": prompt}
    expected = make_op("caption", preprocess="worker", **config)(decoded).column("caption").to_pylist()
    prepared = prepare_stage("caption", **config)(decoded)
    pixel_col = "_caption/pixel_values"
    assert pixel_col in prepared.column_names and ("_caption/input_ids" in prepared.column_names) == (prompt is not None)
    out = make_op("caption", **config)(prepared.drop_columns(["pixels"]))  # the worker needs no pixels
    assert out.column("caption").to_pylist() == expected and out.column("error").null_count == len(expected)
    assert any(expected)


def test_caption_refuses_to_prepare_in_tasks_what_the_processor_cannot_split(tiny_models):
    with pytest.raises(ValueError, match=r"Idefics2Processor.*cannot run in the prepare tasks.*set preprocess: worker"):
        prepare_stage("caption", model=str(tiny_models("idefics2")), prompt="Describe it.")


def test_model_errors_are_row_errors_not_crashes(tiny_models):
    path = tiny_models("clip")
    table = pa.table({"id": ["ok", "bad"], "image": [encode(synthetic_image(0, (40, 40))), b"nope"]})
    out = run_ops(table, make_op("decode_image"), make_op("embed", model=str(path)))
    assert out.column("error").to_pylist()[0] is None
    assert out.column("error").to_pylist()[1].startswith("decode_image:")
    assert out.column("image_embedding").to_pylist()[1] is None


def test_safetensors_only_unless_allow_pickle(tmp_path, tiny_models):
    import shutil

    from transformers import CLIPModel

    src = tiny_models("clip")
    dst = tmp_path / "pickled"
    shutil.copytree(src, dst)
    model = CLIPModel.from_pretrained(src)
    for f in dst.glob("*.safetensors"):
        f.unlink()
    torch.save(model.state_dict(), dst / "pytorch_model.bin")  # a pickle checkpoint
    from mmbatch.operators.base import OPERATORS

    cls = OPERATORS.get("embed")
    with pytest.raises(OSError, match="allow_pickle"):
        cls(cls.Config(model=str(dst))).setup()
    cls(cls.Config(model=str(dst), allow_pickle=True)).setup()


@pytest.mark.gpu
def test_embed_in_fp16_on_cuda_matches_transformers(tiny_models):
    """A step given a GPU loads on CUDA in the dtype asked for and equals the model called
    directly through transformers on the same device."""
    from transformers import CLIPModel, CLIPProcessor

    from mmbatch.core.resources import Resources
    from mmbatch.operators.base import OPERATORS

    path = str(tiny_models("clip"))
    cls = OPERATORS.get("embed")
    op = cls(cls.Config(model=path, dtype="float16"), Resources(gpus=1))
    op.setup()
    assert op.device == "cuda" and op.model_dtype == torch.float16
    images = [np.asarray(synthetic_image(i, (64, 48))) for i in range(4)]
    got = op.process({"pixels": images})["image_embedding"]
    model = CLIPModel.from_pretrained(path, dtype=torch.float16).to("cuda").eval()
    pixels = CLIPProcessor.from_pretrained(path)(images=images, return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        ref = model.get_image_features(pixel_values=pixels.to("cuda", torch.float16)).pooler_output.float()
    ref = torch.nn.functional.normalize(ref, dim=-1).cpu().numpy()
    np.testing.assert_allclose(np.stack(got), ref, atol=1e-3)


def test_prepare_stage_gives_exactly_the_processors_tensors(tiny_models, decoded, images):
    """The CPU prepare stage (run as Ray tasks by the engine) computes what the processor
    computed in the actor before: identical pixel_values and token ids."""
    from transformers import AutoImageProcessor, CLIPProcessor

    clip = str(tiny_models("clip"))
    op = make_op("embed", model=clip, text="text")
    stage = op.preparer()
    stage.setup()
    out = stage(decoded)
    assert out.column("error").null_count == len(images)
    assert set(op.prepared()) <= set(out.column_names) and "image_embedding" not in out.column_names
    proc = CLIPProcessor.from_pretrained(clip)
    ref = proc(images=[np.asarray(i) for i in images], return_tensors="np")["pixel_values"]
    got = column_to_python(out.column(op.column("pixel_values")))
    assert got.dtype == np.float32 and np.array_equal(got, ref)
    ids = column_to_python(out.column(op.column("input_ids")))
    assert [i.tolist() for i in ids] == proc.tokenizer(TEXTS, truncation=True)["input_ids"]

    half = make_op("embed", model=clip, dtype="float16").preparer()
    half.setup()
    got16 = column_to_python(half(decoded).column(op.column("pixel_values")))
    assert got16.dtype == np.float16 and np.array_equal(got16, ref.astype(np.float16))

    vit = str(tiny_models("vit_classifier"))
    op = make_op("classify", model=vit)
    stage = op.preparer()
    stage.setup()
    got = column_to_python(stage(decoded).column(op.column("pixel_values")))
    ref = AutoImageProcessor.from_pretrained(vit)(images=[np.asarray(i) for i in images], return_tensors="np")
    assert np.array_equal(got, ref["pixel_values"])


def test_a_row_the_processor_rejects_is_an_error_row_of_that_step(tiny_models):
    from mmbatch.core.columns import to_arrow

    op = make_op("embed", model=str(tiny_models("clip")))
    pixels = [np.zeros((40, 30, 3), np.uint8), np.zeros((0, 5, 3), np.uint8), np.full((20, 20, 3), 9, np.uint8)]
    out = op(pa.table({"pixels": to_arrow(pixels)}))
    errors = out.column("error").to_pylist()
    assert errors[0] is None and errors[2] is None and errors[1].startswith("embed: ")
    assert out.column("image_embedding").null_count == 1


def _ok_values(table: pa.Table, outputs: list[str], ok: list[int]) -> dict[str, list]:
    return {name: [column_to_python(table.column(name))[i] for i in ok] for name in outputs}


@pytest.mark.parametrize(("name", "model", "keys", "outputs", "forward"), [
    ("embed", "clip", {}, ["image_embedding"], "get_image_features"),
    ("classify", "vit_classifier", {}, ["label_topk", "label_scores"], "forward"),
    ("classify", "clip", {"labels": ["cat", "dog", "red square"]}, ["label_topk", "label_scores"], "get_image_features"),
    ("caption", "blip_captioner", {"max_new_tokens": 8}, ["caption"], "generate"),
    ("caption", "blip_captioner", {"max_new_tokens": 8, "prompt": "a picture of"}, ["caption"], "generate"),
])
def test_decode_on_device_equals_decode_image_then_the_step_and_keeps_bad_rows_as_errors(
        tiny_models, images, name, model, keys, outputs, forward):
    """The GPU-decode path (nvJPEG through torchvision on CUDA, the processor on the device)
    runs the same code on the CPU here: JPEGs decoded in one batch (one held sideways, by its
    EXIF orientation), anything else through PIL, bad bytes as error rows; the rows that
    decode get what decode_image and the step's prepare tasks give them."""
    from mmbatch.testing.images import bad_image_bytes

    path = str(tiny_models(model))
    bad = bad_image_bytes()
    encoded = [encode(images[0], "JPEG"), bad["corrupt"], encode(images[1], "PNG"), bad["truncated"],
               encode(images[2], "JPEG", orientation=6), bad["bomb"], encode(images[3].convert("L"), "JPEG")]
    table = pa.table({"id": [str(i) for i in range(len(encoded))], "image": encoded})
    op = make_op(name, model=path, image="image", decode_on_device=True, **keys)
    assert op.media_inputs() == {"image"} and not op.prepared() and op.preparer() is None
    got = op(table)
    # the PNG went to PIL, row by row; the summary says so (the other JPEGs decoded in one batch)
    assert op.stats["decoded_by_pil"] == 1
    summary = RunSummary("j", "out", 7, 4, 3, 0, 1.0, steps={f"steps[0] {name}": dict(op.stats)})
    assert "1 image decoded by PIL row by row" in summary.render()
    ref = run_ops(table, make_op("decode_image"), prepare_stage(name, model=path, **keys), make_op(name, model=path, **keys))
    errors = got.column("error").to_pylist()
    assert [e is None for e in errors] == [True, False, True, False, True, False, True]
    assert errors[1].startswith(f"{name}: ") and "truncated" in errors[3].lower() and "pixels" in errors[5]
    assert all(got.column(o).null_count == 3 for o in outputs)
    ok = [i for i, e in enumerate(errors) if e is None]
    g, r = _ok_values(got, outputs, ok), _ok_values(ref, outputs, ok)

    def assert_same(a: dict[str, list], b: dict[str, list]) -> None:
        for o in outputs:
            if isinstance(a[o][0], str | list) and isinstance(np.ravel(a[o][0])[0], str):
                assert a[o] == b[o], o
            else:
                np.testing.assert_allclose(np.stack(a[o]), np.stack(b[o]), atol=1e-6, err_msg=o)

    assert_same(g, r)

    # a batch too big for the device: decoded and run again in halves, bad rows kept in place
    op = make_op(name, model=path, image="image", decode_on_device=True, **keys)
    calls = fits_on_device(op, forward, 2)
    split = op(table)
    assert split.column("error").to_pylist() == errors
    # 7 rows, 4 of them good: 4 do not fit; then rows 0-2 (2 good), 3-5 (1), 6 (1)
    assert calls == [4, 2, 1, 1] and op.fit_size == 3
    assert_same(_ok_values(split, outputs, ok), g)


def test_generation_that_runs_out_of_device_memory_is_split_and_gives_the_same_captions(tiny_models, decoded):
    """Caption starts with the whole batch; on CUDA out-of-memory it halves the rows per
    generate call, keeps the size that fits for later batches, and reports it."""
    path = str(tiny_models("blip_captioner"))
    whole = make_op("caption", model=path, max_new_tokens=8)
    expected = whole(decoded).column("caption").to_pylist()
    assert whole.stats["batch"] == len(expected)

    op = make_op("caption", model=path, max_new_tokens=8)
    calls = fits_on_device(op, "generate", 2)
    out = op(decoded)
    assert out.column("caption").to_pylist() == expected and out.column("error").null_count == len(expected)
    assert calls[:3] == [5, 2, 2] and op.fit_size == 2 and op.stats["batch"] == 2
    calls.clear()
    op(decoded)
    assert calls == [2, 2, 1]  # the size that fitted is kept


@pytest.mark.parametrize(("name", "model", "forward", "output"), [
    ("embed", "clip", "get_image_features", "image_embedding"),
    ("classify", "vit_classifier", "forward", "label_scores"),
])
def test_a_batch_too_big_for_the_device_is_split_and_gives_the_same_rows(tiny_models, decoded, name, model, forward,
                                                                         output):
    """embed and classify (256 rows a batch by default on GPUs) halve a batch that runs out
    of device memory, as caption does, and keep the size that fitted."""
    path = str(tiny_models(model))
    keys = {"output": "label"} if name == "classify" else {}
    expected = make_op(name, model=path, **keys)(decoded).column(output).to_pylist()

    op = make_op(name, model=path, **keys)
    calls = fits_on_device(op, forward, 2)
    got = op(decoded).column(output).to_pylist()
    np.testing.assert_allclose(np.array(got, dtype=np.float32), np.array(expected, dtype=np.float32), atol=1e-6)
    assert calls[:3] == [5, 2, 2] and op.fit_size == 2 and op.stats["batch"] == 2
