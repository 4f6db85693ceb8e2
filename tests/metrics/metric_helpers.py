"""Helpers for the metric tests: random corpora, block splitting, random images and
random-weight FID Inception weights."""

from __future__ import annotations

import io
import random
import shutil
from typing import Any

import pytest

requires_java = pytest.mark.skipif(shutil.which("java") is None, reason="java is not installed")

# Words with unicode, punctuation the PTB tokenizer splits off or drops, contractions.
WORDS = (
    "a man woman dog cat riding horse the on in with of big small red blue green two 2 3.5 "
    "café naïve Ünïcode 東京 ñandú straße , . ! ? ( ) \" ' - -- ... ; : 's n't don't U.S. "
    "e-mail $ 100% #tag @user & A THE Dog DOG"
).split()


def sentence(rng: random.Random, max_words: int = 12) -> str:
    """A random sentence; about 1 in 15 is empty, some have odd spacing."""
    if rng.random() < 1 / 15:
        return rng.choice(["", " ", "  "])
    words = [rng.choice(WORDS) for _ in range(rng.randint(1, max_words))]
    sep = rng.choice([" ", " ", " ", "  "])
    return sep.join(words)


def caption_corpus(n: int, seed: int = 0) -> dict[str, list]:
    """``{"id", "caption", "references"}`` with duplicates: repeated captions, repeated
    references, whole repeated rows, and 1..6 references per row."""
    rng = random.Random(seed)
    rows: list[tuple[str, list[str]]] = []
    for _ in range(n):
        if rows and rng.random() < 0.08:
            rows.append(rows[rng.randrange(len(rows))])  # duplicate row
            continue
        refs = [sentence(rng) for _ in range(rng.randint(1, 6))]
        if rng.random() < 0.2:
            refs.append(refs[0])  # duplicate reference
        pred = rng.choice(refs) if rng.random() < 0.15 else sentence(rng)
        rows.append((pred, refs))
    return {
        "id": [f"img-{i}" for i in range(n)],
        "caption": [p for p, _ in rows],
        "references": [list(r) for _, r in rows],
    }


def split_blocks(columns: dict[str, list], k: int, seed: int = 0) -> list[dict[str, list]]:
    """The rows split into ``k`` contiguous blocks of random sizes (some may be empty)."""
    n = len(next(iter(columns.values())))
    rng = random.Random(seed)
    cuts = sorted(rng.randint(0, n) for _ in range(k - 1))
    bounds = [0, *cuts, n]
    return [{c: v[a:b] for c, v in columns.items()} for a, b in zip(bounds, bounds[1:], strict=False)]


def png_bytes(img: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def random_images(n: int, seed: int = 0, sizes: tuple[tuple[int, int], ...] = ((48, 40),)) -> list[Any]:
    """``n`` RGB PIL images with structure (gradients, blocks, noise) so features vary."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        w, h = sizes[i % len(sizes)]
        yy, xx = np.mgrid[0:h, 0:w]
        base = rng.uniform(0, 255, size=3)
        freq = rng.uniform(0.02, 0.5, size=3)
        img = np.stack([base[c] * (0.5 + 0.5 * np.sin(freq[c] * (xx + rng.uniform(0, 3) * yy))) for c in range(3)], -1)
        x0, y0 = rng.integers(0, w // 2), rng.integers(0, h // 2)
        img[y0:y0 + h // 3, x0:x0 + w // 3] = rng.uniform(0, 255, size=3)
        img += rng.normal(0, rng.uniform(1, 40), size=img.shape)
        out.append(Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB"))
    return out


def random_fid_inception_state(seed: int = 0) -> dict[str, Any]:
    """A random state dict for pytorch-fid's FID InceptionV3 (``fid_inception_v3`` layout).

    pytorch-fid builds the architecture and downloads the weights in one function; the
    download is replaced by "keep the initialised weights". Convolutions get He init so the
    2048-d pool features stay O(1) through the 90-odd layers (PyTorch's default init makes
    them vanish)."""
    from unittest import mock

    import torch
    from pytorch_fid import inception as fid_inception

    torch.manual_seed(seed)
    with mock.patch.object(fid_inception, "load_state_dict_from_url", lambda *a, **k: None), \
            mock.patch.object(torch.nn.Module, "load_state_dict", lambda self, *a, **k: None):
        net = fid_inception.fid_inception_v3()
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return net.state_dict()


def relative_difference(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)
