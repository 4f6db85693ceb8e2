"""Fixtures of the metric tests: random-weight FID InceptionV3 weights, a tiny CLIP."""

from __future__ import annotations

from pathlib import Path

import pytest

from .metric_helpers import random_fid_inception_state


@pytest.fixture(scope="session")
def fid_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight FID InceptionV3 saved like pytorch-fid's ``.pth`` weights file."""
    import torch

    path = tmp_path_factory.mktemp("fid") / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(random_fid_inception_state(), path)
    return path


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random CLIP (real tokenizer and processor files) under a path containing
    ``openai``, the only kind of local path torchmetrics' CLIPScore accepts."""
    from mmbatch.testing.vision import build_tiny_clip

    return Path(build_tiny_clip(tmp_path_factory.mktemp("openai") / "openai-clip-tiny"))
