"""Reading one file named by a local path or any fsspec URL (``s3://``, ``gs://``, ``http://``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from pydantic import BaseModel, Field


class PathAccessKeys(BaseModel):
    """The key of a step that opens files named in a column (a path instead of bytes)."""

    allowed_roots: list[str] | None = Field(
        None,
        description="local folders a path column may name files under (default: the input's own folder); "
        "other local paths are error rows; URLs (s3://, https://, ...) are always allowed",
    )


def check_path_allowed(path: str, roots: list[str] | None) -> None:
    """Raise ``PermissionError`` unless ``path`` is a URL or a local path under one of
    ``roots`` (after resolving links and ``..``). ``None``: no restriction."""
    scheme = path.split("://", 1)[0] if "://" in path else ""
    if roots is None or scheme not in ("", "file", "local"):
        return
    real = os.path.realpath(path.split("://", 1)[-1])
    for root in roots:
        base = os.path.realpath(root)
        if real == base or real.startswith(base.rstrip(os.sep) + os.sep):
            return
    raise PermissionError(f"{path} is outside the allowed roots ({', '.join(roots) or 'none: the input is not local'})")


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
