"""Recall@K against a brute-force full-matrix argsort."""

from __future__ import annotations

import numpy as np
import pytest

from mmbatch.metrics import MetricError, build_metric, compute_local

from .metric_helpers import split_blocks


def brute_force(images: np.ndarray, texts: np.ndarray, image_of_text: np.ndarray, ks: list[int]) -> dict[str, float]:
    """Full similarity matrix, full sort of every query's candidates, first match's position."""
    gi = images / np.linalg.norm(images, axis=1, keepdims=True)
    gt = texts / np.linalg.norm(texts, axis=1, keepdims=True)
    sim = gi @ gt.T  # images x texts
    i2t = []
    for i in range(len(gi)):
        order = np.argsort(-sim[i], kind="stable")
        i2t.append(int(np.flatnonzero(image_of_text[order] == i)[0]))
    t2i = []
    for t in range(len(gt)):
        order = np.argsort(-sim[:, t], kind="stable")
        t2i.append(int(np.flatnonzero(order == image_of_text[t])[0]))
    out = {f"image_to_text_R@{k}": float(np.mean(np.array(i2t) < k)) for k in ks}
    out.update({f"text_to_image_R@{k}": float(np.mean(np.array(t2i) < k)) for k in ks})
    return out


def embeddings(n_images: int, per_image: int, dim: int, noise: float, seed: int):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(n_images, dim)).astype(np.float32)
    image_of_text = np.repeat(np.arange(n_images), per_image)
    texts = (images[image_of_text] + noise * rng.normal(size=(len(image_of_text), dim))).astype(np.float32)
    return images, texts, image_of_text


@pytest.mark.parametrize("blocks, block_size", [(1, 1024), (3, 7), (17, 64)])
def test_pairs_equal_brute_force(blocks: int, block_size: int) -> None:
    images, texts, image_of_text = embeddings(300, 1, 16, noise=1.2, seed=0)
    data = {"id": list(range(300)), "img": images.tolist(), "txt": texts.tolist()}
    metric = build_metric({"metric": "recall_at_k", "image_embedding": "img", "text_embedding": "txt",
                           "ks": [10, 1, 5, 5], "block_size": block_size})
    result = compute_local(metric, split_blocks(data, blocks, seed=blocks))
    expected = brute_force(images.astype(np.float64), texts.astype(np.float64), image_of_text, [1, 5, 10])
    assert {k: v for k, v in result.details.items() if "_R@" in k} == expected
    assert result.count == 300 and result.details["images"] == 300
    assert result.value == pytest.approx(np.mean(list(expected.values())), abs=1e-15)
    assert 0.05 < expected["image_to_text_R@1"] < 0.95  # neither trivial nor hopeless


@pytest.mark.parametrize("blocks", [1, 3, 17])
def test_groups_of_five_captions_equal_brute_force(blocks: int) -> None:
    images, texts, image_of_text = embeddings(80, 5, 12, noise=1.5, seed=1)
    rows = np.random.default_rng(2).permutation(len(texts))  # groups interleaved across blocks
    data = {
        "id": [f"r{i}" for i in range(len(rows))],
        "img": images[image_of_text[rows]].tolist(),
        "txt": texts[rows].tolist(),
        "image_id": [int(1000 + g) for g in image_of_text[rows]],
    }
    metric = build_metric({"metric": "recall_at_k", "image_embedding": "img", "text_embedding": "txt",
                           "group": "image_id", "block_size": 33})
    result = compute_local(metric, split_blocks(data, blocks, seed=blocks))
    # gallery order = first appearance of each group
    first = list(dict.fromkeys(data["image_id"]))
    gallery = images[[g - 1000 for g in first]].astype(np.float64)
    index = {g: i for i, g in enumerate(first)}
    expected = brute_force(gallery, texts[rows].astype(np.float64),
                           np.array([index[g] for g in data["image_id"]]), [1, 5, 10])
    assert {k: v for k, v in result.details.items() if "_R@" in k} == expected
    assert result.details["images"] == 80 and result.count == 400
    # any of the 5 captions counts: image->text recall beats the 1-caption version
    assert expected["image_to_text_R@1"] > expected["text_to_image_R@1"]


def test_dot_product_option_and_errors() -> None:
    data = {"id": [0, 1], "img": [[1.0, 0.0], [10.0, 10.0]], "txt": [[1.0, 0.2], [0.0, 1.0]]}
    dot = compute_local(build_metric({"metric": "recall_at_k", "image_embedding": "img",
                                      "text_embedding": "txt", "ks": [1], "normalize": False}), [data])
    # by dot product the long image 1 wins text 0's query; by cosine image 0 does
    assert dot.details["text_to_image_R@1"] == 0.5
    cos = compute_local(build_metric({"metric": "recall_at_k", "image_embedding": "img",
                                      "text_embedding": "txt", "ks": [1]}), [data])
    assert cos.details["text_to_image_R@1"] == 1.0
    bad = dict(data, txt=[[1.0, 0.2, 0.0], [0.0, 1.0, 0.0]])
    with pytest.raises(MetricError, match="dimensions"):
        compute_local(build_metric({"metric": "recall_at_k", "image_embedding": "img", "text_embedding": "txt"}), [bad])
    with pytest.raises(MetricError, match="row 1"):
        compute_local(build_metric({"metric": "recall_at_k", "image_embedding": "img", "text_embedding": "txt"}),
                      [dict(data, img=[[1.0, 0.0], None])])
    with pytest.raises(ValueError, match="ks"):
        build_metric({"metric": "recall_at_k", "image_embedding": "img", "text_embedding": "txt", "ks": [0]})
