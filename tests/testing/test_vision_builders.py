"""The tiny-model builders and synthetic data of ``mmbatch.testing`` load and run through the
ordinary transformers Auto classes, offline, and are deterministic."""

from __future__ import annotations

import hashlib
import io
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from mmbatch.testing import images as I  # noqa: E402
from mmbatch.testing import tokenizers as T  # noqa: E402
from mmbatch.testing import vision as V  # noqa: E402

OFFLINE = {"local_files_only": True}


def _digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def pics():
    return [I.synthetic_image(i, (48, 40)) for i in range(6)]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-models")
    return {name: builder(root / name) for name, builder in V.BUILDERS.items()}


# --------------------------------------------------------------------------- tokenizers


@pytest.mark.parametrize(
    "make, lo, hi",
    [
        (T.clip_tokenizer, 300, 1000),
        (T.bert_tokenizer, 300, 1000),
        (T.blip_tokenizer, 300, 1000),
        (lambda d: T.opt_tokenizer(d, image_token="<image>"), 300, 1000),
    ],
    ids=["clip", "bert", "blip", "opt"],
)
def test_tokenizer_roundtrip_through_autotokenizer(tmp_path, make, lo, hi):
    tok = make(tmp_path / "a")
    make(tmp_path / "b")
    assert _digest(tmp_path / "a" / "tokenizer.json") == _digest(tmp_path / "b" / "tokenizer.json")
    loaded = transformers.AutoTokenizer.from_pretrained(tmp_path / "a", **OFFLINE)
    assert type(loaded) is type(tok)
    assert lo <= len(loaded) <= hi
    texts = ["a photo of a cat", "A red square on a blue background, zebra 42!"]
    assert loaded(texts)["input_ids"] == tok(texts)["input_ids"]
    decoded = loaded.batch_decode(loaded(texts)["input_ids"], skip_special_tokens=True)
    assert decoded[0] == "a photo of a cat"
    unk = loaded.unk_token_id
    ids = loaded("xylophone quixotic", add_special_tokens=False)["input_ids"]
    assert unk is None or unk not in ids  # any lower-case word is encodable


def test_blip_tokenizer_special_ids():
    tok = T.blip_tokenizer()
    assert tok.bos_token == "[DEC]" and tok.bos_token_id == len(tok) - 2
    assert tok.convert_tokens_to_ids("[ENC]") == len(tok) - 1
    assert (tok.pad_token_id, tok.sep_token_id, tok.cls_token_id) == (0, 3, 2)


# --------------------------------------------------------------------------- images


def test_synthetic_images_are_deterministic(pics):
    a, b = I.synthetic_image(3, (40, 30)), I.synthetic_image(3, (40, 30))
    assert a.size == (40, 30) and a.mode == "RGB"
    assert a.tobytes() == b.tobytes()
    assert len({p.tobytes() for p in pics}) == len(pics)
    assert I.encode(a, "PNG") == I.encode(b, "PNG")
    assert Image.open(io.BytesIO(I.encode(a, "JPEG"))).format == "JPEG"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(I.encode(a, "PNG")))), np.asarray(a))


def test_image_parquet_with_bad_rows(tmp_path):
    bad = I.write_image_parquet(tmp_path / "ds", 12, size=(32, 32), shards=3, with_bad=True)
    assert bad == [f"bad-{k}" for k in I.BAD_KINDS]
    files = sorted((tmp_path / "ds").glob("*.parquet"))
    assert len(files) == 3
    table = pq.read_table(files)
    assert table.column_names == ["id", "image", "references"]
    ids = table.column("id").to_pylist()
    assert ids == list(I.iter_ids(12, with_bad=True)) and len(ids) == 17 and len(set(ids)) == 17
    images = table.column("image").to_pylist()
    refs_col = table.column("references").to_pylist()
    for row_id, data, refs in zip(ids, images, refs_col, strict=True):
        assert refs and all(isinstance(r, str) and r for r in refs)
        if row_id in bad:
            with pytest.raises((OSError, ValueError, Image.DecompressionBombError)):
                with Image.open(io.BytesIO(data)) as im:
                    im.load()
        else:
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                assert im.size == (32, 32)
            assert refs == I.references(int(row_id.split("-")[1]))
    bomb = images[ids.index("bad-bomb")]
    assert len(bomb) < 200
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(bomb))
    # a single file, no bad rows
    assert I.write_image_parquet(tmp_path / "one.parquet", 3) == []
    assert pq.read_table(tmp_path / "one.parquet").num_rows == 3


def test_image_folder(tmp_path):
    paths = I.write_image_folder(tmp_path, 3, size=(20, 10), fmt="PNG")
    assert [p.name for p in paths] == ["img-00000.png", "img-00001.png", "img-00002.png"]
    assert Image.open(paths[1]).tobytes() == I.synthetic_image(1, (20, 10)).tobytes()


# --------------------------------------------------------------------------- models


def test_every_builder_writes_a_small_safetensors_checkpoint(built):
    for name, path in built.items():
        files = set(os.listdir(path))
        assert {"config.json", "model.safetensors"} <= files, name
        assert not any(f.endswith(".bin") for f in files), name
        assert os.path.getsize(path / "model.safetensors") < 5_000_000, name


def test_builders_are_deterministic(tmp_path):
    a = V.build_tiny_clip(tmp_path / "a")
    b = V.build_tiny_clip(tmp_path / "b")
    c = V.build_tiny_clip(tmp_path / "c", seed=1)
    assert _digest(a / "model.safetensors") == _digest(b / "model.safetensors")
    assert _digest(a / "model.safetensors") != _digest(c / "model.safetensors")
    for f in os.listdir(a):
        assert _digest(a / f) == _digest(b / f), f
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    d = V.build_tiny_blip_captioner(tmp_path / "d")
    assert torch.equal(torch.rand(3), expected)  # the caller's RNG stream is left alone
    e = V.build_tiny_blip_captioner(tmp_path / "e")
    assert _digest(d / "model.safetensors") == _digest(e / "model.safetensors")


def test_clip_auto_classes(built, pics):
    path = built["clip"]
    model = transformers.AutoModel.from_pretrained(path, **OFFLINE).eval()
    processor = transformers.AutoProcessor.from_pretrained(path, **OFFLINE)
    assert type(model).__name__ == "CLIPModel"
    assert type(processor).__name__ == "CLIPProcessor"
    zs = transformers.AutoModelForZeroShotImageClassification.from_pretrained(path, **OFFLINE)
    assert type(zs).__name__ == "CLIPModel"
    dim = model.config.projection_dim
    assert dim != model.config.vision_config.hidden_size
    with torch.no_grad():
        image_inputs = processor(images=pics, return_tensors="pt")
        assert tuple(image_inputs["pixel_values"].shape) == (len(pics), 3, 32, 32)
        img = model.get_image_features(
            **image_inputs
        ).pooler_output  # transformers 5: an output object
        text_inputs = processor(
            text=["a photo of a cat", "a blue circle"], padding=True, return_tensors="pt"
        )
        txt = model.get_text_features(**text_inputs).pooler_output
        out = model(
            **processor(text=["a cat", "a dog"], images=pics, padding=True, return_tensors="pt")
        )
    assert tuple(img.shape) == (len(pics), dim) and tuple(txt.shape) == (2, dim)
    assert torch.isfinite(img).all() and torch.isfinite(txt).all()
    assert len({tuple(np.round(r.numpy(), 5)) for r in img}) == len(pics)  # images are told apart
    assert tuple(out.logits_per_image.shape) == (len(pics), 2)
    # the tokenizer's ids fit the text tower
    assert int(text_inputs["input_ids"].max()) < model.config.text_config.vocab_size


def test_vit_classifier_labels_and_pipeline(tmp_path, built, pics):
    path = built["vit"]
    model = transformers.AutoModelForImageClassification.from_pretrained(path, **OFFLINE).eval()
    assert type(model).__name__ == "ViTForImageClassification"
    assert model.config.id2label == {0: "cat", 1: "dog", 2: "bird"}
    assert model.config.label2id == {"cat": 0, "dog": 1, "bird": 2}
    processor = transformers.AutoImageProcessor.from_pretrained(path, **OFFLINE)
    with torch.no_grad():
        logits = model(**processor(images=pics, return_tensors="pt")).logits
    assert tuple(logits.shape) == (len(pics), 3) and torch.isfinite(logits).all()
    clf = transformers.pipeline("image-classification", model=str(path), device="cpu")
    preds = clf(pics[0], top_k=3)
    assert {p["label"] for p in preds} == {"cat", "dog", "bird"}
    assert abs(sum(p["score"] for p in preds) - 1.0) < 1e-4
    custom = V.build_tiny_vit_classifier(tmp_path / "custom", labels=["x", "y", "z", "w"])
    cfg = transformers.AutoConfig.from_pretrained(custom, **OFFLINE)
    assert cfg.id2label == {0: "x", 1: "y", 2: "z", 3: "w"}


def _assert_texty(texts, n):
    assert len(texts) == n
    vocab = set(T.WORDS)
    for t in texts:
        assert isinstance(t, str) and t.strip(), texts
        assert all(w in vocab for w in t.split()), t


def test_blip_captioner_generates_deterministic_text(built, pics):
    path = built["blip-caption"]
    model = transformers.AutoModelForImageTextToText.from_pretrained(path, **OFFLINE).eval()
    processor = transformers.AutoProcessor.from_pretrained(path, **OFFLINE)
    assert type(model).__name__ == "BlipForConditionalGeneration"
    assert type(processor).__name__ == "BlipProcessor"
    tok = processor.tokenizer
    assert (
        model.config.text_config.bos_token_id
        == tok.bos_token_id
        == tok.convert_tokens_to_ids("[DEC]")
    )
    assert model.config.text_config.sep_token_id == tok.sep_token_id
    assert model.config.text_config.vocab_size == len(tok)
    inputs = processor(images=pics, return_tensors="pt")
    with torch.no_grad():
        ids = model.generate(**inputs, max_new_tokens=5)
        again = model.generate(**inputs, max_new_tokens=5)
    assert torch.equal(ids, again)
    assert ids.shape[0] == len(pics) and 1 < ids.shape[1] <= 6
    assert (ids[:, 0] == tok.bos_token_id).all()
    captions = processor.batch_decode(ids, skip_special_tokens=True)
    _assert_texty(captions, len(pics))
    assert len(set(captions)) > 1  # the image matters
    with torch.no_grad():
        prompted = model.generate(
            **processor(images=pics[:2], text=["a photo of"] * 2, return_tensors="pt"),
            max_new_tokens=3,
        )
    for text in processor.batch_decode(prompted, skip_special_tokens=True):
        assert text.startswith("a photo of ") and len(text.split()) == 6


def test_blip_vqa_answers(built, pics):
    path = built["blip-vqa"]
    model = transformers.AutoModelForVisualQuestionAnswering.from_pretrained(path, **OFFLINE).eval()
    processor = transformers.AutoProcessor.from_pretrained(path, **OFFLINE)
    assert type(model).__name__ == "BlipForQuestionAnswering"
    inputs = processor(
        images=pics, text=["what color is the square?"] * len(pics), return_tensors="pt"
    )
    with torch.no_grad():
        ids = model.generate(**inputs, max_new_tokens=3)
        assert torch.equal(ids, model.generate(**inputs, max_new_tokens=3))
    _assert_texty(processor.batch_decode(ids, skip_special_tokens=True), len(pics))


def test_blip2_generates_through_image_text_to_text(built, pics):
    path = built["blip2"]
    model = transformers.AutoModelForImageTextToText.from_pretrained(path, **OFFLINE).eval()
    processor = transformers.AutoProcessor.from_pretrained(path, **OFFLINE)
    assert type(model).__name__ == "Blip2ForConditionalGeneration"
    assert type(processor).__name__ == "Blip2Processor"
    assert type(model.language_model).__name__ == "OPTForCausalLM"
    nq = model.config.num_query_tokens
    assert processor.num_query_tokens == nq
    image_id = model.config.image_token_id
    assert (
        processor.tokenizer.convert_tokens_to_ids("<image>")
        == image_id
        < model.config.text_config.vocab_size
    )

    # image only: the model builds the <image>*nq + </s> prefix itself
    with torch.no_grad():
        ids = model.generate(**processor(images=pics, return_tensors="pt"), max_new_tokens=4)
    captions = processor.batch_decode(ids, skip_special_tokens=True)
    _assert_texty(captions, len(pics))
    assert len(set(captions)) > 1

    # with a prompt: the processor expands the image placeholders, generate returns prompt + answer
    prompt = "Question: what is it? Answer:"
    inputs = processor(images=pics[:2], text=[prompt] * 2, return_tensors="pt")
    assert ((inputs["input_ids"] == image_id).sum(dim=1) == nq).all()
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=4)
        assert torch.equal(out, model.generate(**inputs, max_new_tokens=4))
    assert out.shape[1] == inputs["input_ids"].shape[1] + 4
    for text in processor.batch_decode(out, skip_special_tokens=True):
        assert text.startswith(prompt)
        _assert_texty([text[len(prompt) :]], 1)
