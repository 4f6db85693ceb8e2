"""Reading one file named by a local path or any fsspec URL (``s3://``, ``gs://``, ``http://``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any


@contextmanager
def open_url(path_or_url: str, storage_options: dict[str, Any] | None = None) -> Iterator[IO[bytes]]:
    """``path_or_url`` opened for streaming binary reads."""
    import fsspec

    with fsspec.open(path_or_url, "rb", **(storage_options or {})) as f:
        yield f


def read_bytes(path_or_url: str, storage_options: dict[str, Any] | None = None) -> bytes:
    """The whole content of ``path_or_url``."""
    with open_url(path_or_url, storage_options) as f:
        return f.read()
