"""S3 round trip against a real S3 endpoint: moto's server on 127.0.0.1."""

import socket

import pyarrow as pa
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


@pytest.mark.parametrize("row_group_rows", [None, 2])  # files cut into blocks after the read, or read in row groups
def test_job_reads_and_writes_s3(s3, tmp_path, run_job_dict, row_group_rows):
    fs, opts = s3
    local = tmp_path / "data"
    bad = write_image_parquet(local, 12, size=(48, 32), shards=3, with_bad=True)
    for f in local.glob("*.parquet"):
        pq.write_table(pq.read_table(f), f, row_group_size=row_group_rows)
    for prefix in ("mmbatch-test/in", "mmbatch-test/out"):  # the other case's
        if fs.exists(prefix):
            fs.rm(prefix, recursive=True)
    fs.put(str(local) + "/", "mmbatch-test/in/", recursive=True)
    summary = run_job_dict({
        "input": {"path": "s3://mmbatch-test/in/", "storage_options": opts},
        "steps": [{"op": "decode_image", "batch_size": 4}],
        "output": {"path": "s3://mmbatch-test/out", "storage_options": opts},
    })
    assert (summary.rows, summary.errors) == (12, len(bad))
    # each write task writes its own errors/ file: read them all
    errors = pa.concat_tables([pq.read_table(fs.open(p, "rb")) for p in fs.find("mmbatch-test/out/errors")])
    rows = [pq.read_table(fs.open(p, "rb")) for p in fs.find("mmbatch-test/out/rows")]
    assert sum(t.num_rows for t in rows) == 12
    assert errors.num_rows == len(bad) and set(errors.column("id").to_pylist()) == set(bad)
    assert fs.exists("mmbatch-test/out/summary.json")
    assert not [p for p in fs.find("mmbatch-test/out") if "inprogress" in p]


def test_model_from_s3_is_cached_once_per_node(s3, tiny_models, tmp_path, monkeypatch):
    fs, opts = s3
    monkeypatch.setenv("MMBATCH_CACHE", str(tmp_path / "cache"))
    fs.put(str(tiny_models("clip")) + "/", "mmbatch-test/models/clip/", recursive=True)
    from mmbatch.core.models import resolve_local_path
    from tests.operators.helpers import make_op

    local = resolve_local_path("s3://mmbatch-test/models/clip", opts)
    assert (tmp_path / "cache") in __import__("pathlib").Path(local).parents
    assert sorted(p.name for p in __import__("pathlib").Path(local).iterdir()) == sorted(
        p.name for p in tiny_models("clip").iterdir())
    fs.rm("mmbatch-test/models/clip/config.json")  # a second resolve must not download again
    assert resolve_local_path("s3://mmbatch-test/models/clip", opts) == local
    op = make_op("embed", model="s3://mmbatch-test/models/clip", storage_options=opts)
    assert op.model.config.model_type == "clip"


def _upload(fs, local, key):
    fs.put(str(local) + ("/" if local.is_dir() else ""), f"mmbatch-test/{key}" + ("/" if local.is_dir() else ""),
           recursive=local.is_dir())
    return f"s3://mmbatch-test/{key}"


def test_every_model_load_uses_the_steps_storage_options(s3, tiny_models, tmp_path, monkeypatch):
    """Weights at an object-store URL are fetched with the step's (or metric's) own
    ``storage_options`` -- here the moto endpoint and its keys, without which s3fs would go to
    AWS -- for the ctranslate2 transcriber, a ControlNet, the CLIPScore CLIP and the FID weights."""
    from safetensors.torch import save_file

    from mmbatch.core.metric import build_metric
    from tests.metrics.metric_helpers import random_fid_inception_state
    from tests.operators.helpers import make_op

    fs, opts = s3
    monkeypatch.setenv("MMBATCH_CACHE", str(tmp_path / "cache"))
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)

    ct2 = _upload(fs, tiny_models("whisper_ct2"), "opts/whisper_ct2")
    op = make_op("transcribe", backend="ctranslate2", model=ct2, storage_options=opts)
    assert op.backend.model.model.is_multilingual in (True, False)

    controlnet = _upload(fs, tiny_models("controlnet"), "opts/controlnet")
    op = make_op("generate", model=str(tiny_models("stable_diffusion")), controlnet=controlnet,
                 storage_options=opts, num_inference_steps=1)
    assert type(op.pipe).__name__ == "StableDiffusionControlNetPipeline"

    clip = _upload(fs, tiny_models("clip"), "opts/clip")
    metric = build_metric({"metric": "clip_score", "images": "i", "text": "t", "model": clip, "storage_options": opts})
    metric.setup()
    assert metric._model.config.model_type == "clip"

    weights = tmp_path / "fid.safetensors"
    save_file({k: v.contiguous() for k, v in random_fid_inception_state().items()}, str(weights))
    url = _upload(fs, weights, "opts/fid.safetensors")
    metric = build_metric({"metric": "fid", "images": "i", "reference_stats": "unused.npz", "weights": url,
                           "dims": 64, "storage_options": opts})
    metric.setup()
    assert metric._model is not None
    cached = sorted(p.name for p in (tmp_path / "cache" / "models").iterdir() if p.suffix == ".complete")
    assert len(cached) == 4
