"""A synthetic COCO-style caption benchmark (predictions + references) for metrics-only jobs.

    python -m mmbatch.testing.captions ./data/captions.parquet [--rows 5000] [--seed 0]

writes ``id`` (string), ``caption`` (the "model's" caption) and ``references``
(``list<string>``, 5 human-like captions) -- the input of ``jobs/benchmark_captions.yaml``.
Captions come from templates over a small vocabulary; the prediction is a perturbed
reference (word swaps, drops, case and punctuation changes), so the scores are neither 0 nor
perfect. Same arguments, same file.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

ADJECTIVES = ["small", "large", "red", "white", "black", "young", "old", "brown", "wooden", "busy"]
SUBJECTS = ["man", "woman", "dog", "cat", "child", "group of people", "horse", "bird", "train", "bus"]
VERBS = ["sitting", "standing", "walking", "riding a bike", "eating", "playing", "parked", "running"]
PLACES = ["street", "beach", "kitchen", "field", "table", "park", "station", "snow", "couch", "river"]
PREPOSITIONS = ["on", "in", "near", "next to", "beside"]


def _caption(rng: random.Random, subject: str, place: str) -> str:
    text = (
        f"{rng.choice(['A', 'a', 'The', 'An image of a'])} {rng.choice(ADJECTIVES)} {subject} "
        f"{rng.choice(VERBS)} {rng.choice(PREPOSITIONS)} the {place}"
    )
    return text + rng.choice(["", ".", " .", "!"])


def _perturb(rng: random.Random, caption: str) -> str:
    words = caption.split()
    out = []
    for w in words:
        r = rng.random()
        if r < 0.08:
            continue
        if r < 0.18:
            w = rng.choice(ADJECTIVES + PLACES)
        out.append(w)
    text = " ".join(out) or caption
    return text.lower() if rng.random() < 0.5 else text


def caption_rows(rows: int, seed: int = 0) -> dict[str, list]:
    """Columns ``id``, ``caption``, ``references`` of ``rows`` synthetic images."""
    rng = random.Random(seed)
    data: dict[str, list] = {"id": [], "caption": [], "references": []}
    for i in range(rows):
        subject, place = rng.choice(SUBJECTS), rng.choice(PLACES)
        refs = [_caption(rng, subject, place) for _ in range(5)]
        data["id"].append(f"img-{i:07d}")
        data["references"].append(refs)
        data["caption"].append(_perturb(rng, rng.choice(refs)))
    return data


def write_caption_benchmark(path: str | Path, rows: int = 5000, seed: int = 0) -> Path:
    """Write :func:`caption_rows` as one Parquet file; returns its path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = caption_rows(rows, seed)
    table = pa.table({
        "id": pa.array(data["id"], pa.string()),
        "caption": pa.array(data["caption"], pa.string()),
        "references": pa.array(data["references"], pa.list_(pa.string())),
    })
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(write_caption_benchmark(args.path, args.rows, args.seed))


if __name__ == "__main__":
    main()
