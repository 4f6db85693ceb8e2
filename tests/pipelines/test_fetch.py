"""URL fetches of the decode steps against a local HTTP server (127.0.0.1): timeouts,
retries with backoff, a size limit, and errors naming the URL and the cause."""

import re

import pytest

from mmbatch.core.files import Fetch, FetchError, fetch_url
from mmbatch.testing.images import encode, synthetic_image
from tests.pipelines.http_server import Server

FAST = Fetch(timeout=0.5, retries=2, max_bytes=50_000, backoff=0.05)


@pytest.fixture(scope="module")
def server():
    files = {"a.jpg": encode(synthetic_image(1, (40, 30))), "big.bin": b"x" * 60_000}
    with Server(files, slow_seconds=2.0) as s:
        yield s


def test_fetch_reads_a_file_and_retries_a_503(server):
    assert fetch_url(f"{server.url}/files/a.jpg", fetch=FAST) == server.files["a.jpg"]
    assert fetch_url(f"{server.url}/flaky/a.jpg", fetch=FAST) == server.files["a.jpg"]
    assert [r for r in server.requests if r == "GET /flaky/a.jpg"] == ["GET /flaky/a.jpg"] * 2


@pytest.mark.parametrize("path, cause", [
    ("files/missing.jpg", r"HTTP 404 Not Found$"),
    ("slow/a.jpg", r"timed out \(3 attempts\)"),
    ("files/big.bin", "60000 bytes, more than max_fetch_bytes=50000"),
    ("truncated/a.jpg", r"truncated body|ClientPayloadError|ContentLengthError"),
])
def test_failed_fetch_names_the_url_and_the_cause(server, path, cause):
    with pytest.raises(FetchError, match=rf"^fetch {server.url}/{path}: .*") as info:
        fetch_url(f"{server.url}/{path}", fetch=FAST)
    assert re.search(cause, str(info.value)), str(info.value)
    print(info.value)


def test_404_is_not_retried(server):
    before = len(server.requests)
    with pytest.raises(FetchError):
        fetch_url(f"{server.url}/files/nope.jpg", fetch=FAST)
    assert len(server.requests) - before <= 2  # a HEAD (and its GET fallback), never 3 tries


def test_decode_image_makes_a_failed_fetch_an_error_row(server):
    import pyarrow as pa

    from tests.operators.helpers import make_op

    op = make_op("decode_image", fetch_timeout=0.5, fetch_retries=0)
    out = op(pa.table({"image": [f"{server.url}/files/a.jpg", f"{server.url}/files/gone.jpg"]}))
    errors = out.column("error").to_pylist()
    assert errors[0] is None and out.column("image_width").to_pylist()[0] == 40
    assert errors[1] == f"decode_image: FetchError: fetch {server.url}/files/gone.jpg: HTTP 404 Not Found"
