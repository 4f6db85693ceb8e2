"""CLIPScore against torchmetrics' ``CLIPScore`` with a tiny random CLIP.

torchmetrics 1.9 still expects ``get_image_features`` / ``get_text_features`` to return
tensors; transformers 5 returns a model output. The reference therefore gets the model through
torchmetrics' callable hook, wrapped so that those two methods return ``.pooler_output`` --
everything else (processor calls, truncation, normalisation, sums, clamp) is torchmetrics'.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mmbatch.metrics import build_metric, compute_local

from .metric_helpers import png_bytes, random_images, relative_difference, split_blocks


class TensorFeatures(torch.nn.Module):
    """A CLIPModel whose ``get_*_features`` return tensors (the transformers 4.x contract)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.clip = model
        self.config = model.config

    def get_image_features(self, *args, **kwargs):
        return self.clip.get_image_features(*args, **kwargs).pooler_output

    def get_text_features(self, *args, **kwargs):
        return self.clip.get_text_features(*args, **kwargs).pooler_output


@pytest.fixture(scope="module")
def corpus() -> dict[str, list]:
    rng = np.random.default_rng(0)
    words = "a photo of dog cat red car tree two people café 東京 , . !".split()
    texts = [" ".join(rng.choice(words, size=rng.integers(1, 12))) for _ in range(60)]
    texts[3] = ""
    texts[7] = " ".join(["dog"] * 120)  # longer than 77 tokens: torchmetrics truncates
    texts[8] = texts[9]  # duplicate
    images = random_images(60, seed=4, sizes=((40, 32), (32, 32), (50, 30)))
    return {"id": list(range(60)), "image": [png_bytes(x) for x in images], "caption": texts, "pil": images}


@pytest.fixture(scope="module")
def reference_rows(tiny_clip_dir: Path, corpus: dict) -> np.ndarray:
    """torchmetrics' per-pair 100 * cos, and it checks the class's clamp-on-the-mean."""
    from torchmetrics.functional.multimodal.clip_score import _clip_score_update
    from torchmetrics.multimodal.clip_score import CLIPScore
    from transformers import CLIPModel, CLIPProcessor

    def load():
        return TensorFeatures(CLIPModel.from_pretrained(str(tiny_clip_dir))), CLIPProcessor.from_pretrained(
            str(tiny_clip_dir)
        )

    model, processor = load()
    tensors = [torch.from_numpy(np.array(img)).permute(2, 0, 1) for img in corpus["pil"]]
    with torch.no_grad(), pytest.warns(UserWarning, match="longer than"):
        rows, _ = _clip_score_update(tensors, corpus["caption"], model, processor)
        metric = CLIPScore(model_name_or_path=load)
        metric.update(tensors[:30], corpus["caption"][:30])
        metric.update(tensors[30:], corpus["caption"][30:])
        whole = float(metric.compute())
    rows = rows.double().numpy()
    assert whole == pytest.approx(max(rows.mean(), 0.0), rel=1e-5)
    return rows


def entry(clip_dir: Path, **kw: object) -> dict[str, object]:
    return {"metric": "clip_score", "images": "image", "text": "caption", "model": str(clip_dir),
            "batch_size": 7, **kw}


def test_clip_score_equals_torchmetrics_for_any_blocking(tiny_clip_dir: Path, corpus: dict, reference_rows) -> None:
    data = {k: corpus[k] for k in ("id", "image", "caption")}
    values = []
    for blocks in (1, 3, 17):
        result = compute_local(build_metric(entry(tiny_clip_dir, per_row=True)), split_blocks(data, blocks, seed=blocks))
        assert result.count == 60
        np.testing.assert_allclose(result.row_scores["clip_score"], reference_rows, rtol=1e-5, atol=1e-4)
        values.append(result.value)
    expected = max(float(np.mean(reference_rows)), 0.0)
    assert expected > 0
    assert all(relative_difference(v, expected) <= 1e-5 for v in values)
    # blocks change the text batches (padding lengths), so float32 rows move in the last bits
    assert max(values) - min(values) <= 1e-6 * expected


def test_clamp_is_on_the_mean(tiny_clip_dir: Path, corpus: dict, reference_rows) -> None:
    negative = [i for i, s in enumerate(reference_rows) if s < 0]
    positive = [i for i, s in enumerate(reference_rows) if s > 0]
    assert negative and positive
    rows = negative + positive[:1]  # mean below 0, one row above
    data = {k: [corpus[k][i] for i in rows] for k in ("id", "image", "caption")}
    result = compute_local(build_metric(entry(tiny_clip_dir, per_row=True)), [data])
    assert result.value == 0.0
    assert result.details["mean_before_clamp"] == pytest.approx(np.mean(reference_rows[rows]), rel=1e-5)
    assert max(result.row_scores["clip_score"]) > 0  # rows are not clamped


def test_paper_mode(tiny_clip_dir: Path, corpus: dict, reference_rows) -> None:
    data = {k: corpus[k] for k in ("id", "image", "caption")}
    result = compute_local(build_metric(entry(tiny_clip_dir, mode="paper", per_row=True)), split_blocks(data, 3))
    expected_rows = 2.5 * np.maximum(reference_rows / 100, 0)
    np.testing.assert_allclose(result.row_scores["clip_score"], expected_rows, rtol=1e-5, atol=1e-6)
    assert relative_difference(result.value, float(np.mean(expected_rows))) <= 1e-5
    assert min(result.row_scores["clip_score"]) == 0.0
