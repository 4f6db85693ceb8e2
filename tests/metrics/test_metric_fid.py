"""FID against pytorch-fid's own path: its ``InceptionV3`` loading the (random) weights file
from the torch hub cache as if downloaded, ``calculate_activation_statistics`` on PNG files,
``calculate_frechet_distance``.

The full FID value is compared at 64 dims: ``scipy.linalg.sqrtm`` of a 2048 x 2048 matrix
takes about a minute on two cores, so at 2048 dims the statistics handed to
``calculate_frechet_distance`` are compared instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmbatch.metrics import MetricError, build_metric, compute_local
from mmbatch.metrics.fid import Moments

from .metric_helpers import png_bytes, random_images, relative_difference, split_blocks

SIZES = ((48, 40), (40, 48))


@pytest.fixture(scope="module")
def hub_model(fid_weights: Path, tmp_path_factory: pytest.TempPathFactory):
    """pytorch-fid's InceptionV3 factory loading ``fid_weights`` through its own download path."""
    import shutil

    import torch
    from pytorch_fid.inception import FID_WEIGHTS_URL, InceptionV3

    hub = tmp_path_factory.mktemp("hub")
    (hub / "checkpoints").mkdir()
    shutil.copy(fid_weights, hub / "checkpoints" / FID_WEIGHTS_URL.rsplit("/", 1)[-1])
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(hub))
    models: dict[int, object] = {}

    def get(dims: int):
        if dims not in models:
            models[dims] = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[dims]]).eval()
        return models[dims]

    yield get
    torch.hub.set_dir(old)


def reference_stats(model, images: list, tmp_path: Path, tag: str, dims: int, batch_size: int):
    from pytorch_fid.fid_score import calculate_activation_statistics

    files = []
    for i, img in enumerate(images):
        path = tmp_path / f"{tag}{i:03d}.png"
        img.save(path)
        files.append(str(path))
    return calculate_activation_statistics(files, model, batch_size, dims, "cpu", 0)


def test_moments_merge_equals_numpy_for_any_blocking() -> None:
    rng = np.random.default_rng(0)
    acts = rng.gamma(2.0, 0.3, size=(700, 96)) + rng.normal(size=(1, 96)) * 5
    mu, sigma = np.mean(acts, axis=0), np.cov(acts, rowvar=False)
    one = Moments.of(acts).mu_sigma("x")
    np.testing.assert_array_equal(one[0], mu)  # a single block is np.mean / np.cov bit for bit
    np.testing.assert_array_equal(one[1], sigma)
    for blocks in (3, 17):
        rows = split_blocks({"a": list(range(700))}, blocks, seed=blocks)
        parts = [Moments.of(acts[r["a"][0]:r["a"][-1] + 1]) if r["a"] else None for r in rows]
        m, s = Moments.merge(parts).mu_sigma("x")
        assert np.max(np.abs(m - mu)) <= 1e-13 * np.max(np.abs(mu))
        assert np.max(np.abs(s - sigma)) <= 1e-13 * np.max(np.abs(sigma))


def test_fid_64_dims_equals_pytorch_fid(hub_model, fid_weights: Path, tmp_path: Path) -> None:
    from pytorch_fid.fid_score import calculate_frechet_distance

    gen = random_images(30, seed=1, sizes=SIZES[:1])
    ref = random_images(30, seed=2, sizes=SIZES[:1])
    model = hub_model(64)
    m1, s1 = reference_stats(model, gen, tmp_path, "g", 64, 50)
    m2, s2 = reference_stats(model, ref, tmp_path, "r", 64, 50)
    expected = calculate_frechet_distance(m1, s1, m2, s2)
    assert expected > 1e-3
    data = {"id": list(range(30)), "gen": [png_bytes(x) for x in gen], "ref": [png_bytes(x) for x in ref]}
    result = compute_local(
        build_metric({"metric": "fid", "images": "gen", "reference": "ref", "dims": 64,
                      "weights": f"file://{fid_weights}", "batch_size": 16}),
        [data],
    )
    assert relative_difference(result.value, expected) <= 1e-6
    assert result.count == 30 and result.details["reference_images"] == 30

    # reference statistics from a pytorch-fid .npz; 17 blocks of generated images
    npz = tmp_path / "ref_stats.npz"
    np.savez_compressed(npz, mu=m2, sigma=s2)
    blocked = compute_local(
        build_metric({"metric": "fid", "images": "gen", "reference_stats": str(npz), "dims": 64,
                      "weights": str(fid_weights), "batch_size": 16}),
        split_blocks({"id": data["id"], "gen": data["gen"]}, 17, seed=4),
    )
    assert relative_difference(blocked.value, expected) <= 1e-6


def test_mixed_image_sizes(hub_model, fid_weights: Path, tmp_path: Path) -> None:
    """Images of different sizes are batched by size; pytorch-fid needs batch size 1 there."""
    from pytorch_fid.fid_score import calculate_frechet_distance

    gen = random_images(12, seed=3, sizes=SIZES)
    model = hub_model(64)
    m1, s1 = reference_stats(model, gen, tmp_path, "g", 64, 1)
    m2, s2 = m1[::-1].copy(), s1[::-1, ::-1].copy()
    npz = tmp_path / "stats.npz"
    np.savez(npz, mu=m2, sigma=s2)
    metric = build_metric({"metric": "fid", "images": "gen", "reference_stats": str(npz), "dims": 64,
                           "weights": str(fid_weights)})
    result = compute_local(metric, [{"id": list(range(12)), "gen": [png_bytes(x) for x in gen]}])
    assert relative_difference(result.value, calculate_frechet_distance(m1, s1, m2, s2)) <= 1e-6


@pytest.mark.slow  # 2048-d pool features: the whole InceptionV3, 16 forward passes at 299 px
def test_fid_2048_dims_statistics_equal_pytorch_fid(
    hub_model, fid_weights: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pytorch_fid.fid_score as fid_score

    gen = random_images(8, seed=5)
    m1, s1 = reference_stats(hub_model(2048), gen, tmp_path, "g", 2048, 50)
    npz = tmp_path / "ref.npz"
    np.savez(npz, mu=m1 + 0.5, sigma=s1 * 2)
    seen = []
    monkeypatch.setattr(fid_score, "calculate_frechet_distance", lambda *a: seen.append(a) or 1.5)
    data = {"id": list(range(8)), "gen": [png_bytes(x) for x in gen]}
    result = compute_local(
        build_metric({"metric": "fid", "images": "gen", "reference_stats": str(npz), "weights": str(fid_weights)}),
        split_blocks(data, 3, seed=1),
    )
    assert result.value == 1.5 and result.count == 8
    (mu1, sigma1, mu2, sigma2), = seen
    assert mu1.shape == (2048,) and sigma1.shape == (2048, 2048)
    assert np.std(m1) > 1e-3 and np.max(np.diag(s1)) > 1e-6  # features that vary
    for got, want in ((mu1, m1), (sigma1, s1)):
        assert np.max(np.abs(got - want)) <= 1e-9 * np.max(np.abs(want))
    np.testing.assert_array_equal(mu2, m1 + 0.5)
    np.testing.assert_array_equal(sigma2, s1 * 2)


def test_config_and_input_errors(fid_weights: Path) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        build_metric({"metric": "fid", "images": "gen"})
    with pytest.raises(ValueError, match="exactly one"):
        build_metric({"metric": "fid", "images": "gen", "reference": "r", "reference_stats": "s.npz"})
    metric = build_metric({"metric": "fid", "images": "gen", "reference": "ref", "dims": 64,
                           "weights": str(fid_weights)})
    assert metric.input_columns() == ["gen", "ref"]
    with pytest.raises(MetricError, match="row 'b'.*cannot decode"):
        compute_local(metric, [{"id": ["a", "b"], "gen": [png_bytes(random_images(1)[0]), b"not a png"],
                                "ref": [b"x", b"y"]}])
    with pytest.raises(MetricError, match="at least 2"):
        compute_local(metric, [{"id": ["a"], "gen": [png_bytes(random_images(1)[0])],
                                "ref": [png_bytes(random_images(1)[0])]}])
    import pickle

    assert metric._model is not None  # loaded by the runs above
    assert pickle.loads(pickle.dumps(metric))._model is None  # workers load their own
