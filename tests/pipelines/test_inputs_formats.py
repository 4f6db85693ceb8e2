"""The input formats users already have: WebDataset shards (local and S3), a Hugging Face
split, JSON Lines / CSV manifests naming media by path or URL. Each runs end to end with a
decode step and a tiny model; every input row is a row or an error row."""

import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmbatch.pipelines.cli import main
from mmbatch.pipelines.inputs import scan_input
from mmbatch.pipelines.spec import InputSpec, JobSpecError
from mmbatch.testing.audio import encode_audio, synthetic_clip
from mmbatch.testing.images import bad_image_bytes, describe, encode, synthetic_image
from mmbatch.testing.shards import sample_members, truncate, write_shard, write_webdataset
from tests.pipelines.http_server import Server
from tests.pipelines.test_s3 import s3  # noqa: F401 - the moto server fixture


def read(path):
    return pq.read_table(path) if path.exists() else None


def bad_shard(path, key=90):
    """A shard whose samples break the ways real ones do, each an error row."""
    return write_shard(path, [
        *sample_members(key),
        ("README", b"no key"),                                    # a member without a key
        *sample_members(key + 1), (f"{key + 1:05d}.txt", b"x"),  # a member twice
        (f"{key + 2:05d}.jpg", bad_image_bytes()["truncated"]),  # an image that does not decode
        (f"{key + 3:05d}.json", b"{not json"),                   # bad JSON
    ])


@pytest.mark.slow
def test_caption_webdataset_job_runs_and_resumes(ray_session, tiny_models, tmp_path, monkeypatch, capsys):
    shards = tmp_path / "shards"
    write_webdataset(shards, 6, shards=2)
    bad_shard(shards / "shard-00002.tar")
    monkeypatch.setenv("CAPTION_MODEL", str(tiny_models("blip_captioner")))
    monkeypatch.setenv("WDS_OUTPUT", str(tmp_path / "out"))
    args = ["run", "jobs/caption_webdataset.yaml", f"input.path={shards}/shard-{{00000..00002}}.tar",
            "steps.1.max_new_tokens=4", "steps.1.resources.cpus=0.5", "steps.0.resize=32"]
    assert main(args) == 0
    out = tmp_path / "out"
    rows, errors = read(out / "rows"), read(out / "errors")
    assert rows.num_rows + errors.num_rows == 6 + 5 == json.loads((out / "summary.json").read_text())["input_rows"]
    assert sorted(rows.column("key").to_pylist()) == [f"{i:05d}" for i in range(6)] + ["00090"]
    assert {"jpg_width", "txt", "json_width", "json_source", "json_tags", "caption", "shard"} <= set(rows.column_names)
    assert "jpg" not in rows.column_names  # media bytes are not copied to rows/
    got = dict(zip(rows.column("key").to_pylist(), rows.column("txt").to_pylist(), strict=True))
    assert all(got[f"{i:05d}"] == describe(i) for i in range(6))  # each sample's own .txt
    assert json.loads(rows.column("json_tags").to_pylist()[0]) == ["a", "b"]
    shard = str(shards / "shard-00002.tar")
    by_key = dict(zip(errors.column("key").to_pylist(), errors.column("error").to_pylist(), strict=True))
    assert by_key == {
        "README": f"input: {shard}: tar member 'README' has no extension, so no WebDataset key "
                  "(members are named <key>.<field>, e.g. 00001.jpg)",
        "00091": f"input: {shard}: sample '00091' holds member '00091.txt' twice",
        "00092": by_key["00092"],
        "00093": "input: " + shard + ": 00093.json is not valid JSON (Expecting property name enclosed in double "
                 "quotes: line 1 column 2 (char 1))",
    }
    assert by_key["00092"].startswith("steps[0] decode_image: ")
    # the key is the id: a second run resumes without redoing anything
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0
    assert "nothing left to do" in capsys.readouterr().out


def test_webdataset_shards_that_cannot_be_read_are_refused_by_name(tmp_path):
    shards = tmp_path / "shards"
    files = write_webdataset(shards, 6, shards=3)
    truncate(files[1], 0.7)

    def spec(**kw):
        return InputSpec(path=str(shards / "shard-{00000..00002}.tar"), format="webdataset", **kw)

    with pytest.raises(JobSpecError) as info:
        scan_input(spec())
    assert str(info.value).startswith(f"{files[1]}: not a readable tar shard (truncated tar ")
    assert str(info.value).endswith("; fix or remove it, or set input.on_bad_file: skip")
    scan = scan_input(spec(on_bad_file="skip"))
    assert scan.rows == 4 and [s["path"] for s in scan.skipped] == [str(files[1])]
    assert scan.skipped[0]["reason"].startswith("truncated tar ")

    files[1].unlink()
    with pytest.raises(JobSpecError, match=r"cannot list .*: input.path: .*shard-00001.tar does not exist"):
        scan_input(spec())

    shutil.copy(files[0], files[1])  # the same keys in two shards
    with pytest.raises(JobSpecError) as info:
        scan_input(spec())
    assert str(info.value) == (
        "input: 2 ids are held by more than one row, e.g. '00000' (2 rows), '00001' (2 rows); every row needs "
        "its own 'id' (or set input.duplicate_ids: error to make such rows error rows)")
    assert scan_input(spec(duplicate_ids="error")).rows == 6


def test_webdataset_shards_on_s3(s3, ray_session, tmp_path, run_job_dict):  # noqa: F811
    fs, opts = s3
    write_webdataset(tmp_path / "shards", 5, shards=2)
    bad_shard(tmp_path / "shards" / "shard-00002.tar", key=50)
    fs.put(str(tmp_path / "shards") + "/", "mmbatch-test/wds/", recursive=True)
    s = run_job_dict({
        "input": {"path": "s3://mmbatch-test/wds/shard-{00000..00002}.tar", "format": "webdataset",
                  "storage_options": opts},
        "steps": [{"op": "decode_image", "column": "jpg"}],
        "output": {"path": str(tmp_path / "out")},
    })
    errors = read(tmp_path / "out" / "errors")
    assert (s.rows, s.errors, s.input_rows) == (6, 4, 10)
    assert set(errors.column("shard").to_pylist()) == {"s3://mmbatch-test/wds/shard-00002.tar"}
    assert "input: s3://mmbatch-test/wds/shard-00002.tar: tar member 'README' has no extension" in " ".join(
        errors.column("error").to_pylist())


@pytest.mark.slow
def test_huggingface_split_with_image_and_audio_features(ray_session, tiny_models, tmp_path, run_job_dict):
    import datasets

    n = 7
    images = [encode(synthetic_image(i, (40, 30)), "PNG") for i in range(n)] + [bad_image_bytes()["corrupt"]]
    audio = [encode_audio(synthetic_clip(i, 0.5), ext="wav") for i in range(n + 1)]
    features = datasets.Features({"image": datasets.Image(), "audio": datasets.Audio(), "label": datasets.Value("int64")})
    media = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table({
        "image": pa.array([{"bytes": b, "path": None} for b in images], media),
        "audio": pa.array([{"bytes": b, "path": None} for b in audio], media),
        "label": pa.array(range(n + 1), pa.int64()),
    })
    # stored as datasets stores them (struct<bytes, path>), without encoding (no torchcodec needed)
    ds = datasets.Dataset(datasets.table.InMemoryTable(table), info=datasets.DatasetInfo(features=features))
    datasets.DatasetDict({"test": ds}).save_to_disk(str(tmp_path / "hf"))
    clip = str(tiny_models("clip"))
    job = {
        "input": {"path": str(tmp_path / "hf"), "format": "huggingface", "split": "test"},
        "steps": [{"op": "decode_image", "resize": 32}, {"op": "decode_audio"},
                  {"op": "embed", "model": clip, "resources": {"cpus": 0.5}}],
        "output": {"path": str(tmp_path / "out")},
    }
    s = run_job_dict(job)
    rows, errors = read(tmp_path / "out" / "rows"), read(tmp_path / "out" / "errors")
    assert (s.rows, s.errors, s.input_rows) == (n, 1, n + 1)
    # no id column in the split: the row's index in it, stable across runs
    assert sorted(rows.column("id").to_pylist()) == sorted(f"test:{i}" for i in range(n))
    assert errors.column("id").to_pylist() == [f"test:{n}"]
    assert errors.column("error").to_pylist()[0].startswith("steps[0] decode_image: ")  # the corrupt image
    assert rows.column("image_width").to_pylist() == [40] * n and rows.column("duration").to_pylist() == [0.5] * n
    assert len(rows.column("image_embedding").to_pylist()[0]) > 0
    with pytest.raises(JobSpecError, match=r"has no split 'validation' \(splits: test\); set input.split"):
        scan_input(InputSpec(path=str(tmp_path / "hf"), format="huggingface", split="validation"))


@pytest.mark.slow
def test_transcribe_manifest_job_fetches_urls(ray_session, tiny_models, tmp_path, monkeypatch):
    clips = {f"c{i}.wav": encode_audio(synthetic_clip(i, 0.6), ext="wav") for i in range(3)}
    clips["big.wav"] = encode_audio(synthetic_clip(9, 3.0), ext="wav")
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "l0.wav").write_bytes(clips["c0.wav"])
    with Server(clips, slow_seconds=3.0) as server:
        lines = [
            {"id": "ok-0", "audio": f"{server.url}/files/c0.wav", "speaker": "a"},
            {"id": "ok-1", "audio": f"{server.url}/flaky/c1.wav", "speaker": "b"},  # a 503 first: retried
            {"id": "ok-local", "audio": "local/l0.wav", "speaker": "c"},           # relative to the manifest
            {"id": "missing", "audio": f"{server.url}/files/none.wav"},
            {"id": "slow", "audio": f"{server.url}/slow/c2.wav"},
            {"id": "big", "audio": f"{server.url}/files/big.wav"},
            {"id": "cut", "audio": f"{server.url}/truncated/c2.wav"},
        ]
        (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
        monkeypatch.setenv("ASR_MANIFEST", str(tmp_path / "manifest.jsonl"))
        monkeypatch.setenv("ASR_MODEL", str(tiny_models("whisper")))
        monkeypatch.setenv("ASR_OUTPUT", str(tmp_path / "out"))
        assert main(["run", "jobs/transcribe_manifest.yaml", "steps.0.fetch_timeout=1", "steps.0.fetch_retries=1",
                     "steps.0.max_fetch_bytes=60000", "steps.1.max_new_tokens=4", "steps.1.resources.cpus=0.5"]) == 0
    rows, errors = read(tmp_path / "out" / "rows"), read(tmp_path / "out" / "errors")
    assert rows.num_rows + errors.num_rows == len(lines)
    assert sorted(rows.column("id").to_pylist()) == ["ok-0", "ok-1", "ok-local"]
    assert {"text", "speaker", "duration"} <= set(rows.column_names)
    assert str(tmp_path / "local" / "l0.wav") in rows.column("audio").to_pylist()
    err = dict(zip(errors.column("id").to_pylist(), errors.column("error").to_pylist(), strict=True))
    prefix = "steps[0] decode_audio: FetchError: fetch " + server.url
    assert err["missing"] == f"{prefix}/files/none.wav: HTTP 404 Not Found"
    assert err["slow"] == f"{prefix}/slow/c2.wav: timed out (2 attempts)"
    assert err["big"] == f"{prefix}/files/big.wav: {len(clips['big.wav'])} bytes, more than max_fetch_bytes=60000"
    assert err["cut"].startswith(f"{prefix}/truncated/c2.wav: ") and "(2 attempts)" in err["cut"]


@pytest.mark.slow
def test_csv_manifest_with_relative_paths(ray_session, tiny_models, tmp_path, run_job_dict):
    folder = tmp_path / "data"
    (folder / "img").mkdir(parents=True)
    lines = ["id,image,caption"]
    for i in range(5):
        (folder / "img" / f"{i}.png").write_bytes(encode(synthetic_image(i, (24, 24)), "PNG"))
        lines.append(f"r{i},img/{i}.png,picture {i}")
    lines += ["r-gone,img/gone.png,missing file", "r-outside,/etc/hostname,outside the input folder"]
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n")
    s = run_job_dict({
        "input": {"path": str(folder / "manifest.csv"), "format": "csv", "path_column": "image"},
        "steps": [{"op": "decode_image"}, {"op": "embed", "model": str(tiny_models("clip")), "resources": {"cpus": 0.5}}],
        "output": {"path": str(tmp_path / "out")},
    })
    assert (s.rows, s.errors, s.input_rows) == (5, 2, 7)
    errors = read(tmp_path / "out" / "errors")
    err = dict(zip(errors.column("id").to_pylist(), errors.column("error").to_pylist(), strict=True))
    assert err["r-gone"].startswith("steps[0] decode_image: FileNotFoundError: ")
    assert err["r-outside"] == (f"steps[0] decode_image: PermissionError: /etc/hostname is outside the allowed roots "
                                f"({folder})")


def test_manifest_scan_names_a_missing_path_column(tmp_path):
    (tmp_path / "m.jsonl").write_text('{"id": 1, "url": "http://127.0.0.1/x.wav"}\n')
    with pytest.raises(JobSpecError) as info:
        scan_input(InputSpec(path=str(tmp_path / "m.jsonl"), format="jsonl", path_column="audio"))
    assert str(info.value) == f"{tmp_path / 'm.jsonl'}: no path column 'audio' (columns: id, url); set input.path_column"
    with pytest.raises(ValueError, match="path_column is a key of the jsonl and csv formats, not parquet"):
        InputSpec(path="x", path_column="audio")
    with pytest.raises(ValueError, match="split and config are keys of format huggingface, not webdataset"):
        InputSpec(path="x", format="webdataset", split="test")
