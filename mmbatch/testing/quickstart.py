"""Assets for the offline quickstart: a synthetic image corpus and tiny random-weight models.

The models have the real CLIP and BLIP architectures, tokenizers and processors, saved with
``save_pretrained`` and loaded back through the ordinary ``from_pretrained`` path - but their
weights are random, so labels and captions are meaningless. Point the job at real hub
models (``openai/clip-vit-base-patch32``, ``Salesforce/blip-image-captioning-base``) for
real outputs.
"""

from __future__ import annotations

from pathlib import Path

from .images import write_image_parquet
from .vision import build_tiny_blip_captioner, build_tiny_clip


def prepare(root: str | Path, n: int = 96, shards: int = 4) -> dict[str, Path]:
    """Write ``root/data/images/part-*.parquet`` (``n`` images plus 5 broken ones) and
    ``root/models/{clip,blip}``; returns their paths. Existing models are kept."""
    root = Path(root)
    data = root / "data" / "images"
    write_image_parquet(data, n, size=(320, 240), shards=shards, with_bad=True)
    paths = {"data": data}
    for name, build in (("clip", build_tiny_clip), ("blip", build_tiny_blip_captioner)):
        target = root / "models" / name
        if not (target / "config.json").exists():
            build(target)
        paths[name] = target
    return paths
