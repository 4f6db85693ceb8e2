"""Synthetic WebDataset shards for tests and demos: ``<key>.jpg`` + ``<key>.txt`` +
``<key>.json`` per sample, and shards broken in the ways real ones break."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from .images import describe, encode, synthetic_image


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def sample_members(i: int, size: tuple[int, int] = (48, 32)) -> list[tuple[str, bytes]]:
    key = f"{i:05d}"
    return [
        (f"{key}.jpg", encode(synthetic_image(i, size), "JPEG")),
        (f"{key}.txt", describe(i).encode()),
        (f"{key}.json", json.dumps({"width": size[0], "source": "synthetic", "tags": ["a", "b"]}).encode()),
    ]


def write_shard(path: str | Path, members: list[tuple[str, bytes]]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            add_member(tar, name, data)
    return path


def write_webdataset(directory: str | Path, n: int, shards: int = 2, size: tuple[int, int] = (48, 32)) -> list[Path]:
    """``shard-00000.tar`` ... holding samples ``00000`` .. ``n-1`` (keys in order)."""
    directory = Path(directory)
    per = -(-n // shards)
    return [
        write_shard(directory / f"shard-{s:05d}.tar",
                    [m for i in range(s * per, min(n, (s + 1) * per)) for m in sample_members(i, size)])
        for s in range(shards)
    ]


def truncate(path: str | Path, keep: float = 0.6) -> Path:
    """Cut a shard to ``keep`` of its bytes before the zero padding at its end (1.0: cut
    exactly where the end-of-archive marker begins)."""
    path = Path(path)
    data = path.read_bytes()
    content = len(data.rstrip(b"\0"))
    content += -content % 512  # the last member's data is padded to a whole block
    path.write_bytes(data[: int(content * keep)])
    return path
