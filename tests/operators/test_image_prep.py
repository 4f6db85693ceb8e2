"""The standard image processors in torch alone (``mmbatch.operators.image_prep``) equal
transformers' own, bit for bit, and a prepare stage that uses them imports no transformers."""

import json
import subprocess
import sys

import numpy as np
import pytest

from mmbatch.operators.image_prep import standard_image_prep

from .helpers import prepare_stage

# landscape, portrait, square at the target, smaller than the target, odd sizes
SIZES = [(480, 640), (640, 480), (224, 224), (200, 300), (50, 100), (37, 401), (1000, 333)]
OPENAI_HUB_CLIP = {  # openai/clip-vit-base-patch32's preprocessor_config.json (transformers 4 style)
    "crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
    "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": 224,
}
RAW = {
    "clip-hub": OPENAI_HUB_CLIP,
    "vit-type-only": {"image_processor_type": "ViTImageProcessor"},
    "clip-crop-padded": {"image_processor_type": "CLIPImageProcessor", "size": {"shortest_edge": 200},
                         "crop_size": {"height": 224, "width": 240}},
    "clip-rescale-only": {"image_processor_type": "CLIPImageProcessor", "do_normalize": False},
    "clip-uint8": {"image_processor_type": "CLIPImageProcessor", "do_normalize": False, "do_rescale": False},
    "blip-bilinear-normalize-only": {"image_processor_type": "BlipImageProcessor", "resample": 2, "do_rescale": False},
    "siglip-fast-name": {"image_processor_type": "SiglipImageProcessorFast", "size": {"height": 256, "width": 256}},
}


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in SIZES]


def _saved(tmp_path, name):
    import transformers

    getattr(transformers, name)().save_pretrained(tmp_path)
    return tmp_path


def _raw(tmp_path, config):
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    return tmp_path


def _assert_equal_to_transformers(path, images):
    from transformers import AutoImageProcessor

    prep = standard_image_prep(str(path))
    assert prep is not None
    ref = AutoImageProcessor.from_pretrained(path)
    assert ref.backend == "torchvision"
    for image in images:
        want = ref(images=[image], return_tensors="np")["pixel_values"]
        got = prep.pixel_values([image])
        assert got.shape == want.shape and got.dtype == want.dtype and np.array_equal(got, want), image.shape
        half = prep.pixel_values([image], np.float16)  # cast per image, as a step's transfer dtype asks
        assert half.dtype == np.float16 and np.array_equal(half, want.astype(np.float16)), image.shape
    same = [images[0]] * 3  # one batch of one shape, as transformers batches it
    assert np.array_equal(prep.pixel_values(same), ref(images=same, return_tensors="np")["pixel_values"])


@pytest.mark.parametrize("name", ["CLIPImageProcessor", "BlipImageProcessor", "SiglipImageProcessor", "ViTImageProcessor"])
def test_each_class_as_transformers_saves_it(tmp_path, images, name):
    _assert_equal_to_transformers(_saved(tmp_path, name), images)


@pytest.mark.parametrize("name", sorted(RAW))
def test_hub_style_and_unusual_configs(tmp_path, images, name):
    _assert_equal_to_transformers(_raw(tmp_path, RAW[name]), images)


def test_bilinear_on_a_cpu_without_avx2_goes_through_float_as_torchvision_does(tmp_path, images, monkeypatch):
    import torch

    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "DEFAULT")  # read by both sides
    _assert_equal_to_transformers(_saved(tmp_path, "ViTImageProcessor"), images)


def test_the_processor_nested_in_processor_config_wins_as_in_transformers(tmp_path, images):
    _raw(tmp_path, {"image_processor_type": "CLIPImageProcessor", "size": {"shortest_edge": 64}})
    nested = {"image_processor_type": "CLIPImageProcessor", "size": {"shortest_edge": 32},
              "crop_size": {"height": 32, "width": 32}}
    (tmp_path / "processor_config.json").write_text(json.dumps({"image_processor": nested, "processor_class": "X"}))
    assert standard_image_prep(str(tmp_path)).pixel_values([images[0]]).shape == (1, 3, 32, 32)
    _assert_equal_to_transformers(tmp_path, images)


@pytest.mark.parametrize("config", [
    {"image_processor_type": "CLIPImageProcessor", "do_pad": True},  # a key beyond the standard ones
    {"image_processor_type": "CLIPImageProcessor", "backend": "pil"},
    {"image_processor_type": "DetrImageProcessor"},  # another class
    {"image_processor_type": "CLIPImageProcessor", "auto_map": {"AutoImageProcessor": "x.Y"}},  # remote code
    {"image_processor_type": "CLIPImageProcessor", "size": {"shortest_edge": 224, "longest_edge": 300}},
    {"image_processor_type": "ViTImageProcessor", "resample": 0},  # nearest
    {"image_processor_type": "ViTImageProcessor", "image_std": [0.5, 0.0, 0.5]},
])
def test_anything_else_is_left_to_transformers(tmp_path, config):
    assert standard_image_prep(str(_raw(tmp_path, config))) is None


def test_no_config_is_left_to_transformers(tmp_path):
    assert standard_image_prep(str(tmp_path)) is None


def test_a_processor_with_a_chat_template_is_not_a_plain_one(tmp_path):
    from mmbatch.operators.image_prep import plain_processor_class

    (tmp_path / "processor_config.json").write_text(json.dumps({"processor_class": "BlipProcessor"}))
    assert plain_processor_class(str(tmp_path)) == "BlipProcessor"
    (tmp_path / "chat_template.jinja").write_text("{{ messages }}")
    assert plain_processor_class(str(tmp_path)) is None


def test_a_bad_image_is_an_error_of_its_row_only(tiny_models):
    import pyarrow as pa

    from mmbatch.core.columns import to_arrow

    stage = prepare_stage("embed", model=str(tiny_models("clip")))
    assert stage.op.image_prep is not None
    pixels = [np.zeros((40, 30, 3), np.uint8), np.zeros((0, 5, 3), np.uint8), np.zeros((9, 9, 4), np.uint8)]
    errors = stage(pa.table({"pixels": to_arrow(pixels)})).column("error").to_pylist()
    assert errors[0] is None
    assert errors[1] == "embed: ValueError: empty image (5x0 pixels)"
    assert errors[2] == "embed: ValueError: expected HxWx3 uint8 RGB pixels, got shape (9, 9, 4) of uint8"


PROBE = """
import sys
from mmbatch.operators.base import OPERATORS
cls = OPERATORS.get(sys.argv[1])
stage = cls(cls.Config(**eval(sys.argv[2]))).preparer()
stage.setup()
print(type(stage.op.image_prep).__name__, "transformers" in sys.modules)
"""


@pytest.mark.parametrize(("op", "config", "light"), [
    ("embed", {"model": "clip"}, True),
    ("embed", {"model": "clip", "text": "text"}, False),  # the tokenizer: transformers
    ("classify", {"model": "vit_classifier"}, True),
    ("caption", {"model": "blip_captioner", "max_new_tokens": 4}, True),
    ("caption", {"model": "blip_captioner", "max_new_tokens": 4, "prompt": "a picture of"}, False),
    ("caption", {"model": "llava", "max_new_tokens": 4}, False),  # a chat template: a prompt even without one
])
def test_a_prepare_worker_imports_no_transformers_for_a_standard_processor(tiny_models, op, config, light):
    """What the change is for: a fresh CPU worker builds the prepare stage without
    transformers' imports (12-14 s on the H100 machine measured, 4.6 s on a 2-core VM)."""
    config = config | {"model": str(tiny_models(config["model"]))}
    out = subprocess.run([sys.executable, "-c", PROBE, op, repr(config)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == (["ImagePrep", "False"] if light else ["NoneType", "True"])
