"""decode_video (PyAV frame sampling) and classify_video (VideoMAE) against direct calls."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from mmbatch.core.columns import column_to_python
from mmbatch.testing.video import bad_video_bytes, encode_video, synthetic_video

from .helpers import make_op

JOBS = Path(__file__).parents[2] / "jobs"


def all_frames(data: bytes) -> np.ndarray:
    import av

    with av.open(io.BytesIO(data)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])
def test_uniform_and_fps_sampling_pick_the_right_frames(codec):
    data = encode_video(synthetic_video(1, 12), fps=8, codec=codec)
    frames = all_frames(data)
    assert len(frames) == 12
    out = make_op("decode_video", num_frames=4)(pa.table({"video": [data]}))
    got = column_to_python(out.column("frames"))[0]
    assert got.shape == (4, 48, 64, 3) and got.dtype == np.uint8
    assert np.array_equal(got, frames[[0, 4, 7, 11]])  # round(linspace(0, 11, 4))
    assert out.column("video_num_frames")[0].as_py() == 12
    assert out.column("video_fps")[0].as_py() == 8.0
    assert out.column("video_duration")[0].as_py() == pytest.approx(1.5)
    out = make_op("decode_video", fps=3.0)(pa.table({"video": [data]}))
    # frames at t = 0, 0.125, ...: the first at or after 0, 1/3, 2/3, 1, 4/3 s
    assert np.array_equal(column_to_python(out.column("frames"))[0], frames[[0, 3, 6, 8, 11]])
    # a short video repeats frames to give num_frames
    out = make_op("decode_video", num_frames=20, resize=24)(pa.table({"video": [data]}))
    got = column_to_python(out.column("frames"))[0]
    assert got.shape == (20, 24, 32, 3)


def test_corrupt_videos_are_error_rows(tmp_path):
    good = encode_video(synthetic_video(0, 8))
    (tmp_path / "v.mp4").write_bytes(good)
    bad = bad_video_bytes()
    op = make_op("decode_video", num_frames=2)
    assert op(pa.table({"video": [str(tmp_path / "v.mp4")]})).column("error")[0].as_py() is None  # a path
    out = op(pa.table({"video": [good, *bad.values()]}))
    errors = out.column("error").to_pylist()
    assert errors[0] is None
    assert all(e and e.startswith("decode_video: ") for e in errors[1:]), errors
    assert "empty video" in errors[1 + list(bad).index("empty")]
    assert "no video stream" in errors[1 + list(bad).index("truncated")]


def test_classify_video_equals_the_model_called_directly(tiny_models):
    import torch
    from transformers import AutoImageProcessor, AutoModelForVideoClassification

    path = tiny_models("videomae")
    videos = [encode_video(synthetic_video(i, 8)) for i in range(4)]
    table = make_op("decode_video", num_frames=8)(pa.table({"video": videos}))
    op = make_op("classify_video", model=str(path), top_k=2)
    out = op(table)
    assert out.column("error").null_count == 4

    model = AutoModelForVideoClassification.from_pretrained(path).eval()
    processor = AutoImageProcessor.from_pretrained(path)
    clips = [list(all_frames(v)[[0, 2, 5, 7]]) for v in videos]  # 8 frames -> the model's 4, evenly
    with torch.no_grad():
        probs = model(**processor(clips, return_tensors="pt")).logits.softmax(-1)
    scores, idx = probs.topk(2, dim=-1)
    labels = [[model.config.id2label[j] for j in row] for row in idx.tolist()]
    assert out.column("label_topk").to_pylist() == labels
    assert out.column("label").to_pylist() == [row[0] for row in labels]
    got = np.stack(column_to_python(out.column("label_scores")))
    np.testing.assert_allclose(got, scores.numpy(), rtol=1e-6)


@pytest.mark.slow
def test_classify_video_job_end_to_end(tiny_models, ray_session, tmp_path, monkeypatch):
    from mmbatch.pipelines.run import run_job
    from mmbatch.pipelines.spec import load_job
    from mmbatch.testing.video import write_video_folder

    write_video_folder(tmp_path / "videos", 5, num_frames=8)
    for kind, payload in bad_video_bytes().items():
        (tmp_path / "videos" / f"bad-{kind}.mp4").write_bytes(payload)
    monkeypatch.setenv("VIDEO_INPUT", str(tmp_path / "videos"))
    monkeypatch.setenv("VIDEO_MODEL", str(tiny_models("videomae")))
    monkeypatch.setenv("VIDEO_OUTPUT", str(tmp_path / "out"))
    summary = run_job(load_job(JOBS / "classify_video.yaml", ["steps.0.resize=32"]))
    assert (summary.input_rows, summary.rows, summary.errors) == (9, 5, 4)
