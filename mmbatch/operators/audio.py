"""decode_audio: encoded audio bytes (or a path/URL) -> mono float32 waveform at one sample rate."""

from __future__ import annotations

import gc
import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from mmbatch.core.columns import Column
from mmbatch.core.files import Fetch, check_path_allowed, open_url
from mmbatch.core.requirements import Requirements

from .base import map_rows, register
from .decoding import DecodeKeys, Decoder

SILENCE_PEAK = 1e-4  # below -80 dBFS everywhere: silent


class DecodeAudioConfig(DecodeKeys):
    column: str = Field("audio", description="binary column of encoded audio, or string column of paths/URLs")
    output: str = Field("waveform", description="output column: mono float32 samples (not written)")
    sample_rate: int = Field(16_000, ge=1000, description="output sample rate (Whisper and Wav2Vec2: 16000)")
    max_duration: float | None = Field(
        14_400, gt=0, description="seconds (default 4 h); longer files become error rows instead of filling "
        "memory; null: no limit"
    )
    reject_silence: bool = Field(False, description="make silent files error rows (default: valid rows)")
    resampler: Literal["float", "faster_whisper"] = Field(
        "float",
        description="float: PyAV's float resampler; faster_whisper: faster_whisper.decode_audio (16-bit), "
        "so a ctranslate2 transcribe step gets exactly the samples faster-whisper reads itself "
        "(chosen for you when such a step reads this output, unless set here)",
    )


def _declared_seconds(container: Any, stream: Any) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


def _open_audio(f: IO[bytes]) -> tuple[Any, Any]:
    """(container, its first audio stream), or ``ValueError`` naming what is wrong."""
    import av

    try:
        container = av.open(f, mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, EOFError) as exc:
        raise ValueError(f"not decodable audio: {exc}") from None
    if not container.streams.audio:
        container.close()
        raise ValueError("no audio stream in the file")
    return container, container.streams.audio[0]


def _check_decoded(samples: int, sample_rate: int, declared: float | None) -> None:
    """A file that decoded to nothing, or to much less than its header declares, is refused."""
    if samples == 0:
        raise ValueError("no audio samples decoded")
    got = samples / sample_rate
    if declared is not None and got < 0.9 * declared - 0.5:
        raise ValueError(f"truncated audio: decoded {got:.2f} s of the {declared:.2f} s the file declares")


def decode_file(f: IO[bytes], sample_rate: int, max_duration: float | None = None) -> tuple[np.ndarray, int]:
    """Decode the first audio stream of ``f`` with PyAV (ffmpeg), downmixed to mono and
    resampled to ``sample_rate``. Returns (float32 samples, original sample rate)."""
    import av

    container, stream = _open_audio(f)
    with container:
        orig_rate = int(stream.rate or stream.codec_context.sample_rate or 0)
        limit = int(max_duration * sample_rate) if max_duration else None
        chunks: list[np.ndarray] = []
        n = 0
        resampler: av.AudioResampler | None = None
        key = None
        try:
            for frame in container.decode(stream):
                frame_key = (frame.format.name, frame.layout.name, frame.sample_rate)
                outs: list[av.AudioFrame] = []
                if resampler is None or frame_key != key:  # a stream may change layout or rate midway
                    outs = resampler.resample(None) if resampler else []
                    resampler, key = av.AudioResampler(format="flt", layout="mono", rate=sample_rate), frame_key
                frame.pts = None
                for out in [*outs, *resampler.resample(frame)]:
                    chunks.append(out.to_ndarray().reshape(-1))
                    n += chunks[-1].size
                if limit is not None and n > limit:
                    raise ValueError(f"audio is longer than max_duration={max_duration:g} s")
            for out in resampler.resample(None) if resampler else []:
                chunks.append(out.to_ndarray().reshape(-1))
                n += chunks[-1].size
        except (av.error.FFmpegError, EOFError) as exc:
            raise ValueError(f"corrupt or truncated audio (after {n / sample_rate:.2f} s): {exc}") from None
        _check_decoded(n, sample_rate, _declared_seconds(container, stream))
    wave = np.concatenate(chunks).astype(np.float32, copy=False)
    return wave, orig_rate


@contextmanager
def collecting_only_new_objects() -> Iterator[None]:
    """Within this block, a ``gc.collect()`` walks only the objects created in it.

    ``faster_whisper.decode_audio`` ends every file with a full ``gc.collect()`` (its issue
    390: the resampler's objects leak otherwise). A full collection walks every object of
    the process: in a Ray worker that has imported Ray, pyarrow and the operators that is
    about 80 ms a file, several times the decode itself. ``gc.freeze()`` moves the objects
    that exist before the call out of the collector's generations (a list splice, O(1)), so
    the collection visits only the call's own objects, which are the ones it means to free;
    ``gc.unfreeze()`` puts the others back. A process that froze objects itself keeps its
    permanent generation as it is: the block then does nothing."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def decode_as_faster_whisper(f: IO[bytes], sample_rate: int, max_duration: float | None = None) -> tuple[np.ndarray, int]:
    """``faster_whisper.decode_audio`` of ``f`` (16-bit resampling, as faster-whisper reads a
    file itself), after the header checks of :func:`decode_file` (an audio stream, the
    declared duration within ``max_duration``); a file that decodes to nothing, or to much
    less than it declares, is refused as truncated."""
    import av
    from faster_whisper import decode_audio

    container, stream = _open_audio(f)
    with container:
        orig_rate = int(stream.rate or stream.codec_context.sample_rate or 0)
        declared = _declared_seconds(container, stream)
    if max_duration is not None and declared is not None and declared > max_duration:
        raise ValueError(f"audio is longer than max_duration={max_duration:g} s ({declared:.1f} s)")
    f.seek(0)
    try:
        with collecting_only_new_objects():
            wave = decode_audio(f, sampling_rate=sample_rate)
    except (av.error.FFmpegError, EOFError) as exc:
        raise ValueError(f"corrupt or truncated audio: {exc}") from None
    _check_decoded(wave.size, sample_rate, declared)
    if max_duration is not None and wave.size > max_duration * sample_rate:
        raise ValueError(f"audio is longer than max_duration={max_duration:g} s")
    return wave, orig_rate


def read_audio(
    data: bytes | str,
    sample_rate: int = 16_000,
    max_duration: float | None = None,
    storage_options: dict[str, Any] | None = None,
    resampler: str = "float",
    allowed_roots: list[str] | None = None,
    fetch: Fetch | None = None,
) -> tuple[np.ndarray, int]:
    """Bytes, or a local path / fsspec URL -> (mono float32 waveform, original sample rate)."""
    decode = decode_as_faster_whisper if resampler == "faster_whisper" else decode_file
    if isinstance(data, str):
        check_path_allowed(data, allowed_roots)
        with open_url(data, storage_options, fetch) as f:
            return decode(f, sample_rate, max_duration)
    if not data:
        raise ValueError("empty audio (0 bytes)")
    return decode(io.BytesIO(data), sample_rate, max_duration)


@register("decode_audio")
class DecodeAudio(Decoder[DecodeAudioConfig]):
    """Decode audio files (wav, flac, mp3, m4a/aac, ogg/vorbis, opus, ... anything ffmpeg reads).

    Input: ``column`` (bytes, or a path/URL string). Outputs: ``output`` (mono float32 samples
    at ``sample_rate``, transient), ``duration`` (seconds) and ``orig_sample_rate`` (Hz).
    Runs as Ray tasks (1 CPU). Empty, corrupt or truncated files, files with NaN/Inf samples,
    files longer than ``max_duration`` and (with ``reject_silence``) silent files become
    error rows with the reason; silent audio is otherwise a valid row.
    """

    media = "audio"
    default_batch_size = 16
    requires = Requirements(("av",), "audio")

    def requirements(self) -> Requirements:
        if self.config.resampler == "faster_whisper":
            return self.requires.with_modules("faster_whisper")
        return self.requires

    def outputs(self) -> dict[str, str]:
        return {
            self.config.output: f"mono float32 waveform at {self.config.sample_rate} Hz",
            "duration": "seconds of decoded audio",
            "orig_sample_rate": "sample rate of the file, Hz",
        }

    def output_types(self) -> dict[str, pa.DataType]:
        return {"duration": pa.float64(), "orig_sample_rate": pa.int64()}

    def process(self, batch: dict[str, Column]) -> dict[str, Any]:
        cfg = self.config

        def one(**row: Any) -> dict[str, Any]:
            wave, orig = read_audio(row[cfg.column], cfg.sample_rate, cfg.max_duration, cfg.storage_options,
                                    cfg.resampler, cfg.allowed_roots, cfg.fetch())
            if not np.isfinite(wave).all():
                raise ValueError(f"audio holds {int((~np.isfinite(wave)).sum())} NaN/Inf samples")
            if cfg.reject_silence and float(np.abs(wave).max()) < SILENCE_PEAK:
                raise ValueError("silent audio (reject_silence is set)")
            return {cfg.output: wave, "duration": wave.size / cfg.sample_rate, "orig_sample_rate": orig}

        return map_rows({cfg.column: batch[cfg.column]}, one, list(self.outputs()))
