"""Reading one file named by a local path or any fsspec URL (``s3://``, ``gs://``, ``http://``).

A URL is fetched whole through fsspec with a timeout, retries with exponential backoff
(timeouts, connection errors, truncated bodies, HTTP 408/429/5xx) and a size limit; a
fetch that fails raises :class:`FetchError` naming the URL and the HTTP status or the
cause, which a decode step makes the row's error."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

from pydantic import BaseModel, Field

RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
MiB = 1024 * 1024


@dataclass(frozen=True)
class Fetch:
    """How a URL is fetched."""

    timeout: float = 30.0
    retries: int = 3
    max_bytes: int = 1024 * MiB
    backoff: float = 0.5
    """seconds before the first retry, doubled for each next one"""


class PathAccessKeys(BaseModel):
    """The keys of a step that opens files named in a column (a path or URL instead of bytes)."""

    allowed_roots: list[str] | None = Field(
        None,
        description="local folders a path column may name files under (default: the input's own folder); "
        "other local paths are error rows; URLs (s3://, https://, ...) are always allowed",
    )
    fetch_timeout: float = Field(30.0, gt=0, description="seconds one fetch of a URL may take before it is retried")
    fetch_retries: int = Field(
        3, ge=0, description="retries of a failed URL fetch (timeout, connection error, truncated body, "
        "HTTP 408/429/5xx), after 0.5 s, 1 s, 2 s, ...; a 404 or 403 is not retried"
    )
    max_fetch_bytes: int = Field(
        1024 * MiB, ge=1, description="a file at a URL larger than this is an error row (not read into memory)"
    )

    def fetch(self) -> Fetch:
        return Fetch(self.fetch_timeout, self.fetch_retries, self.max_fetch_bytes)


class FetchError(OSError):
    """A URL that could not be fetched: the message names it and the status or cause."""


class _Retry(Exception):
    """A failed attempt worth another try."""


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


def is_url(path: str) -> bool:
    return "://" in path and path.split("://", 1)[0] not in ("file", "local")


def _options(url: str, storage_options: dict[str, Any] | None, fetch: Fetch) -> dict[str, Any]:
    """``storage_options`` with the timeout set where the job did not set one."""
    opts = dict(storage_options or {})
    scheme = url.split("://", 1)[0]
    if scheme in ("http", "https"):
        import aiohttp

        client = dict(opts.get("client_kwargs") or {})
        client.setdefault("timeout", aiohttp.ClientTimeout(total=fetch.timeout))
        opts["client_kwargs"] = client
    elif scheme in ("s3", "s3a"):
        config = dict(opts.get("config_kwargs") or {})
        config.setdefault("connect_timeout", fetch.timeout)
        config.setdefault("read_timeout", fetch.timeout)
        opts["config_kwargs"] = config
    return opts


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status", None) or getattr(exc, "code", None)
    return status if isinstance(status, int) else None


def _cause(exc: BaseException) -> str:
    status = _status(exc)
    if status is not None:
        return f"HTTP {status} {getattr(exc, 'message', '') or ''}".rstrip()
    if isinstance(exc, TimeoutError) or type(exc).__name__ in ("FSTimeoutError", "ServerTimeoutError", "TimeoutError"):
        return "timed out"
    return f"{type(exc).__name__}: {exc}".rstrip(": ")


def _classified(url: str, exc: Exception) -> Exception:
    """A failed attempt as :class:`FetchError` (final) or :class:`_Retry` (transient)."""
    if isinstance(exc, FileNotFoundError):
        http = url.split("://", 1)[0] in ("http", "https")
        return FetchError(f"fetch {url}: {'HTTP 404 Not Found' if http else 'no such object'}")
    status = _status(exc)
    if status is not None and status not in RETRY_STATUS:
        return FetchError(f"fetch {url}: {_cause(exc)}")
    return _Retry(_cause(exc))


def _read_limited(f: IO[bytes], url: str, limit: int) -> bytes:
    chunks: list[bytes] = []
    n = 0
    while True:
        chunk = f.read(min(limit + 1 - n, 8 * MiB))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        n += len(chunk)
        if n > limit:
            raise FetchError(f"fetch {url}: more than max_fetch_bytes={limit} bytes")


def _fetch_once(url: str, storage_options: dict[str, Any] | None, fetch: Fetch) -> bytes:
    """One attempt: a single streamed GET for http(s) (its Content-Length checked before the
    body is read), the object's size then a streamed read elsewhere."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(url, **_options(url, storage_options, fetch))
    http = url.split("://", 1)[0] in ("http", "https")
    try:
        # http: size=-1 skips fsspec's HEAD probe, which reports any failure as "not found"
        size = None if http else fs.size(path)
        if size is not None and size > fetch.max_bytes:
            raise FetchError(f"fetch {url}: {size} bytes, more than max_fetch_bytes={fetch.max_bytes}")
        with fs.open(path, "rb", block_size=0, **({"size": -1} if http else {})) as f:
            if http:
                size = f.r.content_length
                if size is not None and size > fetch.max_bytes:
                    raise FetchError(f"fetch {url}: {size} bytes, more than max_fetch_bytes={fetch.max_bytes}")
            data = _read_limited(f, url, fetch.max_bytes)
    except FetchError:
        raise
    except Exception as exc:  # noqa: BLE001 - sorted into final or transient by its status
        raise _classified(url, exc) from exc
    if size is not None and len(data) < size:
        raise _Retry(f"truncated body: {len(data)} of the {size} bytes declared")
    return data


def fetch_url(url: str, storage_options: dict[str, Any] | None = None, fetch: Fetch | None = None) -> bytes:
    """The whole content of ``url``, or :class:`FetchError` naming the URL and the cause
    (after ``fetch.retries`` retries of a transient failure)."""
    fetch = fetch or Fetch()
    cause = ""
    for attempt in range(fetch.retries + 1):
        if attempt:
            time.sleep(fetch.backoff * 2 ** (attempt - 1))
        try:
            return _fetch_once(url, storage_options, fetch)
        except _Retry as exc:
            cause = str(exc)
    tries = f"{fetch.retries + 1} attempts" if fetch.retries else "1 attempt"
    raise FetchError(f"fetch {url}: {cause} ({tries})")


@contextmanager
def open_url(path_or_url: str, storage_options: dict[str, Any] | None = None,
             fetch: Fetch | None = None) -> Iterator[IO[bytes]]:
    """``path_or_url`` opened for binary reads: a local file streamed, a URL fetched whole."""
    if is_url(path_or_url):
        yield io.BytesIO(fetch_url(path_or_url, storage_options, fetch))
        return
    with open(path_or_url.split("://", 1)[-1], "rb") as f:
        yield f


def read_bytes(path_or_url: str, storage_options: dict[str, Any] | None = None, fetch: Fetch | None = None) -> bytes:
    """The whole content of ``path_or_url``."""
    with open_url(path_or_url, storage_options, fetch) as f:
        return f.read()
