"""decode_audio: every container/codec decoded to mono 16 kHz float32; bad files are error rows."""

import numpy as np
import pyarrow as pa
import pytest

from mmbatch.core.columns import column_to_python
from mmbatch.testing.audio import (
    BAD_KINDS,
    FORMATS,
    bad_audio_bytes,
    encode_audio,
    silence,
    speech_like,
    tone,
)

from .helpers import make_op

# Lossy codecs pad to whole frames: AAC adds up to ~0.1 s, Vorbis a few ms.
SLACK = {"m4a": 0.15, "ogg": 0.06}


@pytest.mark.parametrize("ext", FORMATS)
def test_every_format_decodes_to_mono_16k_with_its_duration(ext):
    seconds = 2.5
    wave = speech_like(seconds, seed=3)
    out = make_op("decode_audio")(pa.table({"audio": [encode_audio(wave, 16_000, ext)]}))
    assert out.column("error").to_pylist() == [None]
    decoded = column_to_python(out.column("waveform"))[0]
    assert decoded.dtype == np.float32 and decoded.ndim == 1
    duration = out.column("duration").to_pylist()[0]
    assert seconds - 1e-3 <= duration <= seconds + SLACK.get(ext, 1e-3)
    assert duration == pytest.approx(len(decoded) / 16_000)
    assert out.column("orig_sample_rate").to_pylist() == [48_000 if ext == "opus" else 16_000]
    if ext in ("wav", "flac"):  # lossless: the samples themselves (16-bit quantised)
        assert np.abs(decoded - wave).max() < 1e-4
    else:  # lossy: still the same signal (energy within 2 dB)
        n = min(len(wave), len(decoded))
        assert 10 * abs(np.log10((decoded[:n] ** 2).sum() / (wave[:n] ** 2).sum())) < 2


def test_resamples_and_downmixes_with_ffmpeg(tmp_path):
    """A 44.1 kHz tone (and stereo Vorbis) comes out at the requested rate, same pitch."""
    wave = tone(2.0, freq=440.0, sr=44_100)
    paths = []
    for ext in ("wav", "ogg"):  # ogg: ffmpeg's Vorbis encoder writes stereo
        paths.append(tmp_path / f"a.{ext}")
        paths[-1].write_bytes(encode_audio(wave, 44_100, ext))
    out = make_op("decode_audio", sample_rate=16_000)(pa.table({"audio": [str(p) for p in paths]}))
    assert out.column("error").to_pylist() == [None, None]
    assert out.column("orig_sample_rate").to_pylist() == [44_100, 44_100]
    for decoded in column_to_python(out.column("waveform")):
        assert abs(len(decoded) / 16_000 - 2.0) < 0.05
        spectrum = np.abs(np.fft.rfft(decoded[:16_000]))
        assert np.argmax(spectrum) == pytest.approx(440, abs=2)  # 1 Hz bins over 1 s
        assert 0.25 < np.abs(decoded).max() < 0.35  # mono mix keeps the amplitude


def test_bad_audio_becomes_error_rows_with_reasons(tmp_path):
    good = encode_audio(speech_like(1.0), ext="flac")
    rows = {"good": good, **{k: bad_audio_bytes(k) for k in BAD_KINDS}, "null": None}
    out = make_op("decode_audio")(pa.table({"id": list(rows), "audio": pa.array(list(rows.values()), pa.binary())}))
    errors = dict(zip(out.column("id").to_pylist(), out.column("error").to_pylist(), strict=True))
    assert errors.pop("good") is None
    reasons = {
        "empty": "empty audio",
        "garbage": "not decodable",
        "truncated": "truncated",
        "nan": "NaN",
        "text": "not decodable",
        "null": "is null",
    }
    for kind, reason in reasons.items():
        assert errors[kind] is not None and errors[kind].startswith("decode_audio: "), kind
        assert reason in errors[kind], (kind, errors[kind])
    assert out.column("duration").to_pylist()[1:] == [None] * (len(rows) - 1)


def test_truncated_mp3_is_caught_by_its_declared_length():
    data = encode_audio(speech_like(6.0, seed=2), ext="mp3")
    out = make_op("decode_audio")(pa.table({"audio": [data[: len(data) // 3]]}))
    assert "truncated audio" in out.column("error").to_pylist()[0]


def test_silence_is_valid_unless_rejected_and_max_duration_guards(tmp_path):
    quiet = encode_audio(silence(1.5))
    long = encode_audio(tone(3.0), ext="flac")
    table = pa.table({"audio": [quiet, long]})
    out = make_op("decode_audio")(table)
    assert out.column("error").to_pylist() == [None, None]
    assert out.column("duration").to_pylist() == [1.5, 3.0]
    out = make_op("decode_audio", reject_silence=True, max_duration=2.0)(table)
    first, second = out.column("error").to_pylist()
    assert "silent audio" in first
    assert "longer than max_duration=2 s" in second


def test_paths_and_missing_files(tmp_path):
    path = tmp_path / "x.mp3"
    path.write_bytes(encode_audio(speech_like(1.0), ext="mp3"))
    out = make_op("decode_audio")(pa.table({"audio": [str(path), str(tmp_path / "missing.wav")]}))
    ok, missing = out.column("error").to_pylist()
    assert ok is None and "FileNotFoundError" in missing
    assert make_op("decode_audio").transient_outputs() == {"waveform"}


def test_a_long_file_is_refused_by_default_before_it_fills_memory():
    """max_duration defaults to 4 h; the faster-whisper path refuses by the declared length,
    before decoding anything."""
    from mmbatch.operators.audio import DecodeAudioConfig

    assert DecodeAudioConfig().max_duration == 14_400
    long = encode_audio(tone(3.0), ext="flac")
    for resampler in ("float", "faster_whisper"):
        out = make_op("decode_audio", max_duration=2.0, resampler=resampler)(pa.table({"audio": [long]}))
        assert "longer than max_duration=2 s" in out.column("error").to_pylist()[0]


def test_faster_whisper_path_collects_only_the_decode_s_own_objects(monkeypatch):
    """faster_whisper.decode_audio ends each file with gc.collect(); decode_audio runs it
    with the heap from before the call frozen, so the collection walks the call's own
    objects, not the whole worker's (a full walk made decode ~6x slower in Ray workers).
    The samples are faster-whisper's own, and the heap is unfrozen afterwards; a heap the
    process froze itself is left as it was."""
    import gc
    import io

    import faster_whisper.audio
    from faster_whisper import decode_audio

    seen: list[int] = []

    class Spy:
        @staticmethod
        def collect() -> int:
            seen.append(gc.get_freeze_count())
            return gc.collect()

    data = encode_audio(speech_like(1.0), 22_050, "mp3")
    direct = decode_audio(io.BytesIO(data))
    monkeypatch.setattr(faster_whisper.audio, "gc", Spy)
    op = make_op("decode_audio", resampler="faster_whisper")
    out = op(pa.table({"audio": [data]}))
    assert np.array_equal(column_to_python(out.column("waveform"))[0], direct)
    assert len(seen) == 1 and seen[0] > 1000, seen  # everything older than the call was out of the walk
    assert gc.get_freeze_count() == 0

    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        op(pa.table({"audio": [data]}))
        # neither unfrozen (0) nor frozen anew (more: the call's own objects); a thread of the
        # test process (Ray's) may free a few frozen objects meanwhile, hence the small slack
        assert frozen - 50 <= seen[-1] <= frozen and frozen - 50 <= gc.get_freeze_count() <= frozen
    finally:
        gc.unfreeze()
