"""S3 round trip against a real S3 endpoint: moto's server on 127.0.0.1."""

import socket

import pyarrow.parquet as pq
import pytest

from mmbatch.testing.images import write_image_parquet


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    opts = {"endpoint_url": f"http://127.0.0.1:{port}", "key": "testing", "secret": "testing",
            "client_kwargs": {"region_name": "us-east-1"}}
    import boto3
    import s3fs

    boto3.client("s3", endpoint_url=opts["endpoint_url"], aws_access_key_id="testing",
                 aws_secret_access_key="testing", region_name="us-east-1").create_bucket(Bucket="mmbatch-test")
    fs = s3fs.S3FileSystem(**opts)
    yield fs, opts
    server.stop()


def test_job_reads_and_writes_s3(s3, tmp_path, run_job_dict):
    fs, opts = s3
    local = tmp_path / "data"
    bad = write_image_parquet(local, 12, size=(48, 32), shards=3, with_bad=True)
    fs.put(str(local) + "/", "mmbatch-test/in/", recursive=True)
    summary = run_job_dict({
        "input": {"path": "s3://mmbatch-test/in/", "storage_options": opts},
        "steps": [{"op": "decode_image", "batch_size": 4}],
        "output": {"path": "s3://mmbatch-test/out", "storage_options": opts},
    })
    assert (summary.rows, summary.errors) == (12, len(bad))
    with fs.open(fs.find("mmbatch-test/out/errors")[0], "rb") as f:
        errors = pq.read_table(f)
    rows = [pq.read_table(fs.open(p, "rb")) for p in fs.find("mmbatch-test/out/rows")]
    assert sum(t.num_rows for t in rows) == 12
    assert errors.num_rows == len(bad) and set(errors.column("id").to_pylist()) == set(bad)
    assert fs.exists("mmbatch-test/out/summary.json")
    assert not [p for p in fs.find("mmbatch-test/out") if "inprogress" in p]


def test_model_from_s3_is_cached_once_per_node(s3, tiny_models, tmp_path, monkeypatch):
    fs, opts = s3
    monkeypatch.setenv("MMBATCH_CACHE", str(tmp_path / "cache"))
    fs.put(str(tiny_models("clip")) + "/", "mmbatch-test/models/clip/", recursive=True)
    from mmbatch.operators.models import resolve_local_path
    from tests.operators.helpers import make_op

    local = resolve_local_path("s3://mmbatch-test/models/clip", opts)
    assert (tmp_path / "cache") in __import__("pathlib").Path(local).parents
    assert sorted(p.name for p in __import__("pathlib").Path(local).iterdir()) == sorted(
        p.name for p in tiny_models("clip").iterdir())
    fs.rm("mmbatch-test/models/clip/config.json")  # a second resolve must not download again
    assert resolve_local_path("s3://mmbatch-test/models/clip", opts) == local
    op = make_op("embed", model="s3://mmbatch-test/models/clip", storage_options=opts)
    assert op.model.config.model_type == "clip"
