"""Tiny random-weight speech models and synthetic, deterministic audio, for tests and the quickstart.

Models (each written with ``save_pretrained`` next to its real processor files, so the
ordinary ``from_pretrained`` path loads it offline):

=====================================  ==========================================================
builder                                loads with
=====================================  ==========================================================
:func:`build_tiny_whisper`             ``WhisperForConditionalGeneration`` / ``AutoProcessor``
                                       (``WhisperFeatureExtractor`` + ``WhisperTokenizer``)
:func:`build_tiny_whisper_ct2`         ``faster_whisper.WhisperModel(dir)`` (CTranslate2, converted
                                       from the tiny Whisper with ``TransformersConverter``)
:func:`build_tiny_wav2vec2_ctc`        ``AutoModelForCTC`` / ``AutoProcessor`` (``Wav2Vec2Processor``)
:func:`build_tiny_audio_classifier`    ``AutoModelForAudioClassification`` / ``AutoFeatureExtractor``
=====================================  ==========================================================

The Whisper tokenizer has the real multilingual layout: 50257 byte-level BPE ids (a small BPE
learned by :mod:`mmbatch.testing.tokenizers`, padded with unreachable letter pieces, and the
empty piece at 50256 by which CTranslate2 recognises a multilingual vocabulary), then
``<|endoftext|>`` = 50257, ``<|startoftranscript|>``, 99 language tokens, ``<|translate|>``,
``<|transcribe|>``, ``<|startoflm|>``, ``<|startofprev|>``, ``<|nospeech|>``,
``<|notimestamps|>`` = 50363 and the 1501 timestamps ``<|0.00|>`` ... ``<|30.00|>`` (vocab 51865),
so ``generate(language=..., task=..., return_timestamps=...)`` and CTranslate2's multilingual
checks behave as with ``openai/whisper-tiny``.

Audio: :func:`tone`, :func:`noise`, :func:`chirp`, :func:`speech_like` (harmonic "syllables"
with vowel formants and pauses), :func:`silence`; :func:`encode_audio` writes wav, flac, mp3,
m4a (AAC), ogg (Vorbis) and opus through PyAV; :func:`bad_audio_bytes` makes empty, garbage,
truncated and NaN-holding files; :func:`write_audio_folder` writes a mixed corpus.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SAMPLE_RATE = 16_000
FORMATS = ("wav", "flac", "mp3", "m4a", "ogg", "opus")
BAD_KINDS = ("empty", "garbage", "truncated", "nan", "text")
CLASSIFIER_LABELS = ("tone", "noise", "chirp", "speech")

# ----------------------------------------------------------------------------- signals


def _t(seconds: float, sr: int) -> np.ndarray:
    return np.arange(int(round(seconds * sr)), dtype=np.float64) / sr


def tone(seconds: float, freq: float = 440.0, sr: int = SAMPLE_RATE, amplitude: float = 0.3) -> np.ndarray:
    return (amplitude * np.sin(2 * np.pi * freq * _t(seconds, sr))).astype(np.float32)


def noise(seconds: float, sr: int = SAMPLE_RATE, seed: int = 0, amplitude: float = 0.1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (amplitude * rng.standard_normal(int(round(seconds * sr)))).clip(-1, 1).astype(np.float32)


def chirp(
    seconds: float, f0: float = 200.0, f1: float = 4000.0, sr: int = SAMPLE_RATE, amplitude: float = 0.3
) -> np.ndarray:
    """Exponential sweep from ``f0`` to ``f1`` Hz."""
    t = _t(seconds, sr)
    k = math.log(f1 / f0) / max(seconds, 1e-9)
    return (amplitude * np.sin(2 * np.pi * f0 * (np.exp(k * t) - 1) / k)).astype(np.float32)


def silence(seconds: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    return np.zeros(int(round(seconds * sr)), dtype=np.float32)


# (F1, F2, F3) of a few vowels, Hz
_VOWELS = ((730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (570, 840, 2410))


def speech_like(seconds: float, sr: int = SAMPLE_RATE, seed: int = 0, amplitude: float = 0.3) -> np.ndarray:
    """Voiced syllables (harmonics of a gliding pitch shaped by vowel formants, with a
    syllable envelope) grouped into words separated by short pauses. Deterministic in ``seed``."""
    rng = random.Random(seed)
    n = int(round(seconds * sr))
    out = np.zeros(n, dtype=np.float64)
    pos = int(0.1 * sr)
    while pos < n:
        for _ in range(rng.randint(1, 4)):  # syllables of one word
            dur = int(rng.uniform(0.12, 0.3) * sr)
            end = min(n, pos + dur)
            if end <= pos:
                break
            t = np.arange(end - pos) / sr
            f0 = rng.uniform(95, 230) * (1 + rng.uniform(-0.15, 0.15) * t / max(t[-1], 1e-9))
            phase = 2 * np.pi * np.cumsum(f0) / sr
            formants = rng.choice(_VOWELS)
            sig = np.zeros_like(t)
            for h in range(1, int(4000 / f0.max())):
                gain = sum(math.exp(-(((h * f0.mean()) - f) / 120.0) ** 2) for f in formants) + 0.02
                sig += gain / h**0.5 * np.sin(h * phase)
            out[pos:end] += sig * np.hanning(end - pos)
            pos = end
        pos += int(rng.uniform(0.08, 0.4) * sr)  # pause between words
    peak = np.abs(out).max()
    if peak > 0:
        out *= amplitude / peak
    return out.astype(np.float32)


SIGNALS = ("speech", "tone", "chirp", "noise", "silence")


def synthetic_clip(i: int, seconds: float, kind: str | None = None, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Clip ``i`` of a corpus: always the same samples for the same arguments."""
    rng = random.Random(i)
    kind = kind or rng.choice(("speech", "speech", "tone", "chirp", "noise"))
    if kind == "speech":
        return speech_like(seconds, sr, seed=i)
    if kind == "tone":
        return tone(seconds, rng.uniform(150, 1500), sr)
    if kind == "chirp":
        return chirp(seconds, rng.uniform(100, 400), rng.uniform(2000, 6000), sr)
    if kind == "noise":
        return noise(seconds, sr, seed=i)
    if kind == "silence":
        return silence(seconds, sr)
    raise ValueError(f"unknown signal kind {kind!r}; expected one of {SIGNALS}")


# ----------------------------------------------------------------------------- encoding

# extension -> (container format, codec, codec sample rate or None = the input rate, channel layout)
_CODECS: dict[str, tuple[str, str, int | None, str]] = {
    "wav": ("wav", "pcm_s16le", None, "mono"),
    "flac": ("flac", "flac", None, "mono"),
    "mp3": ("mp3", "libmp3lame", None, "mono"),
    "m4a": ("ipod", "aac", None, "mono"),
    "ogg": ("ogg", "vorbis", None, "stereo"),  # ffmpeg's own Vorbis encoder is stereo-only
    "opus": ("ogg", "libopus", 48_000, "mono"),
    "wav_f32": ("wav", "pcm_f32le", None, "mono"),
}


def encode_audio(wave: np.ndarray, sr: int = SAMPLE_RATE, ext: str = "wav") -> bytes:
    """Encode a mono float waveform in [-1, 1] as a complete file of type ``ext``
    (wav, flac, mp3, m4a, ogg, opus, or wav_f32 for 32-bit float WAV) with PyAV."""
    import av

    if ext not in _CODECS:
        raise ValueError(f"unknown audio format {ext!r}; expected one of {', '.join(_CODECS)}")
    container_format, codec, rate, layout = _CODECS[ext]
    buf = io.BytesIO()
    with av.open(buf, "w", format=container_format) as out:
        options = {"strict": "experimental"} if codec == "vorbis" else {}
        stream = out.add_stream(codec, rate=rate or sr, layout=layout, options=options)
        assert isinstance(stream, av.AudioStream)
        ctx = stream.codec_context
        resampler = av.AudioResampler(
            format=ctx.format.name, layout=layout, rate=rate or sr, frame_size=ctx.frame_size or 1024
        )
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(wave, dtype=np.float32)[None, :], format="flt", layout="mono"
        )
        frame.sample_rate = sr
        for f in [*resampler.resample(frame), *resampler.resample(None)]:
            out.mux(stream.encode(f))
        out.mux(stream.encode(None))
    return buf.getvalue()


def bad_audio_bytes(kind: str, seed: int = 0) -> bytes:
    """Bytes that must become an error row: ``empty`` (0 bytes), ``garbage`` (random bytes),
    ``truncated`` (a FLAC cut after 40% of its bytes, header intact), ``nan`` (a float WAV
    holding NaN samples), ``text`` (a text file with an audio extension)."""
    rng = np.random.default_rng(seed)
    if kind == "empty":
        return b""
    if kind == "garbage":
        return rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
    if kind == "truncated":
        data = encode_audio(speech_like(4.0, seed=seed), ext="flac")
        return data[: int(len(data) * 0.4)]
    if kind == "nan":
        wave = speech_like(1.0, seed=seed)
        wave[len(wave) // 3 : len(wave) // 3 + 200] = np.nan
        return encode_audio(wave, ext="wav_f32")
    if kind == "text":
        return b"this is not audio, just a text file\n" * 20
    raise ValueError(f"unknown bad audio kind {kind!r}; expected one of {BAD_KINDS}")


@dataclass(frozen=True)
class AudioFile:
    path: Path
    ext: str
    kind: str  # a signal kind, or "bad:<kind>"
    seconds: float

    @property
    def bad(self) -> bool:
        return self.kind.startswith("bad:")


def write_audio_folder(
    root: str | Path,
    n: int,
    *,
    formats: tuple[str, ...] = FORMATS,
    durations: tuple[float, float] = (1.0, 8.0),
    bad: tuple[str, ...] = (),
    silent: int = 0,
    sr: int = SAMPLE_RATE,
) -> list[AudioFile]:
    """Write ``n`` good clips (cycling through ``formats``, durations drawn in ``durations``),
    ``silent`` silent wav clips and one file per kind in ``bad``; returns what was written."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    files: list[AudioFile] = []
    for i in range(n):
        ext = formats[i % len(formats)]
        seconds = round(random.Random(10_000 + i).uniform(*durations), 2)
        rng = random.Random(i)
        kind = rng.choice(("speech", "speech", "tone", "chirp", "noise"))
        path = root / f"clip-{i:05d}.{ext}"
        path.write_bytes(encode_audio(synthetic_clip(i, seconds, kind, sr), sr, ext))
        files.append(AudioFile(path, ext, kind, seconds))
    for i in range(silent):
        path = root / f"silent-{i:03d}.wav"
        path.write_bytes(encode_audio(silence(1.5, sr), sr, "wav"))
        files.append(AudioFile(path, "wav", "silence", 1.5))
    for i, kind in enumerate(bad):
        ext = {"truncated": "flac", "nan": "wav", "text": "mp3", "garbage": "ogg"}.get(kind, "wav")
        path = root / f"bad-{i:02d}-{kind}.{ext}"
        path.write_bytes(bad_audio_bytes(kind, seed=i))
        files.append(AudioFile(path, ext, f"bad:{kind}", 0.0))
    return files


# ----------------------------------------------------------------------------- Whisper

WHISPER_BPE_IDS = 50257  # regular (BPE) ids 0..50256, as in openai/whisper-*


def _whisper_languages() -> list[str]:
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    return [code for code in LANGUAGES if code != "yue"]  # the 99 languages of whisper-tiny


def whisper_tokenizer(save_dir: str | Path | None = None) -> Any:
    """A ``WhisperTokenizer`` with the multilingual Whisper id layout (see the module doc)."""
    from transformers import AddedToken, WhisperTokenizer

    from mmbatch.testing import tokenizers as _tok

    vocab, merges = _tok.bpe_vocab_and_merges("gpt2", 300)
    vocab.pop("<|endoftext|>")
    pieces = sorted(vocab, key=vocab.__getitem__)
    have = set(pieces)
    letters = "abcdefghijklmnopqrstuvwxyz"
    fillers = (
        prefix + "".join(combo)
        for n in (2, 3, 4)
        for combo in itertools.product(letters, repeat=n)
        for prefix in ("Ġ", "")
    )  # unreachable by the merges, but decode to words: a random model "speaks" in letters
    for piece in fillers:
        if len(pieces) >= WHISPER_BPE_IDS - 1:
            break
        if piece not in have:
            pieces.append(piece)
    pieces.append("")  # id 50256 is the empty piece in the multilingual vocab; CTranslate2 checks it
    tok = WhisperTokenizer(vocab={p: i for i, p in enumerate(pieces)}, merges=merges)
    specials = [
        "<|startoftranscript|>",
        *(f"<|{code}|>" for code in _whisper_languages()),
        "<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>",
        "<|notimestamps|>",
    ]  # fmt: skip
    tok.add_special_tokens(
        {"additional_special_tokens": [AddedToken(s, special=True, normalized=False) for s in specials]}
    )
    tok.add_tokens(
        [AddedToken("<|%.2f|>" % (i * 0.02), special=False, normalized=False) for i in range(1501)]
    )
    tok.set_prefix_tokens()  # the post-processor was built before the specials existed
    if save_dir is not None:
        tok.save_pretrained(str(save_dir))
    return tok


def _whisper_generation_config(tok: Any, decoder_layers: int, decoder_heads: int) -> Any:
    from transformers import GenerationConfig

    ids = tok.convert_tokens_to_ids
    eot = ids("<|endoftext|>")
    symbols = '"#()*+/:;<=>@[\\]^_`{|}~'
    suppress = sorted({ids(s) for s in symbols} - {tok.unk_token_id})
    return GenerationConfig(
        alignment_heads=[[decoder_layers - 1, h] for h in range(decoder_heads)],
        begin_suppress_tokens=[ids("Ġ"), eot],
        bos_token_id=eot,
        decoder_start_token_id=ids("<|startoftranscript|>"),
        eos_token_id=eot,
        pad_token_id=eot,
        is_multilingual=True,
        # as in the openai/whisper-* checkpoints: detect the language, then transcribe
        forced_decoder_ids=[[1, None], [2, ids("<|transcribe|>")]],
        lang_to_id={f"<|{c}|>": ids(f"<|{c}|>") for c in _whisper_languages()},
        task_to_id={"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")},
        no_timestamps_token_id=ids("<|notimestamps|>"),
        prev_sot_token_id=ids("<|startofprev|>"),
        max_initial_timestamp_index=50,
        max_length=448,
        return_timestamps=False,
        suppress_tokens=suppress,
    )


def build_tiny_whisper(
    out_dir: str | Path,
    *,
    seed: int = 0,
    d_model: int = 32,
    layers: int = 2,
    heads: int = 4,
    num_mel_bins: int = 80,
    init_std: float = 0.4,
) -> Path:
    """``WhisperForConditionalGeneration`` (30 s windows: 1500 encoder positions, 448 decoder
    positions) + ``WhisperProcessor`` + a full ``generation_config.json`` (``lang_to_id``,
    ``task_to_id``, ``no_timestamps_token_id``, ``alignment_heads``, ...).

    ``init_std`` is large on purpose: with the usual 0.02 a random decoder ignores the encoder
    and every clip gets the same text, which would make equality tests vacuous."""
    import torch
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = whisper_tokenizer()
    gen = _whisper_generation_config(tok, layers, heads)
    config = WhisperConfig(
        vocab_size=len(tok),
        num_mel_bins=num_mel_bins,
        d_model=d_model,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=2 * d_model,
        decoder_ffn_dim=2 * d_model,
        max_source_positions=1500,
        max_target_positions=448,
        pad_token_id=gen.pad_token_id,
        bos_token_id=gen.bos_token_id,
        eos_token_id=gen.eos_token_id,
        decoder_start_token_id=gen.decoder_start_token_id,
        begin_suppress_tokens=gen.begin_suppress_tokens,  # the same as generation_config
        suppress_tokens=gen.suppress_tokens,
        init_std=init_std,
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config).eval()
    model.generation_config = gen
    processor = WhisperProcessor(
        feature_extractor=WhisperFeatureExtractor(feature_size=num_mel_bins, sampling_rate=SAMPLE_RATE),
        tokenizer=tok,
    )
    model.save_pretrained(str(out))
    processor.save_pretrained(str(out))
    # hub checkpoints (and faster-whisper) keep the feature extractor in preprocessor_config.json
    processor.feature_extractor.save_pretrained(str(out))
    return out


def build_tiny_whisper_ct2(out_dir: str | Path, *, seed: int = 0, quantization: str | None = None) -> Path:
    """The tiny Whisper (same ``seed``, same weights as :func:`build_tiny_whisper`) converted
    to CTranslate2: ``model.bin``, ``vocabulary.json``, ``config.json`` plus the
    ``tokenizer.json`` and ``preprocessor_config.json`` that faster-whisper reads."""
    import tempfile

    from ctranslate2.converters import TransformersConverter

    out = Path(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        src = build_tiny_whisper(Path(tmp) / "hf", seed=seed)
        converter = TransformersConverter(str(src), copy_files=["tokenizer.json", "preprocessor_config.json"])
        converter.convert(str(out), quantization=quantization, force=True)
    return out


# ----------------------------------------------------------------------------- Wav2Vec2

CTC_VOCAB = ("<pad>", "<s>", "</s>", "<unk>", "|", *"ETAONIHSRDLUMWCFGYPBVKJXQZ", "'")


def _wav2vec2_config(**kw: Any) -> Any:
    from transformers import Wav2Vec2Config

    return Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(32,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        feat_extract_norm="layer",  # with attention masks: padding does not change results
        do_stable_layer_norm=True,
        **kw,
    )


def _wav2vec2_feature_extractor() -> Any:
    from transformers import Wav2Vec2FeatureExtractor

    return Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0, do_normalize=True, return_attention_mask=True
    )


def build_tiny_wav2vec2_ctc(out_dir: str | Path, *, seed: int = 0) -> Path:
    """``Wav2Vec2ForCTC`` over a character vocabulary (``|`` separates words) +
    ``Wav2Vec2Processor`` (``Wav2Vec2FeatureExtractor`` + ``Wav2Vec2CTCTokenizer``)."""
    import torch
    from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2ForCTC, Wav2Vec2Processor

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab_file = out / "vocab.json"
    vocab_file.write_text(json.dumps({t: i for i, t in enumerate(CTC_VOCAB)}))
    tokenizer = Wav2Vec2CTCTokenizer(
        str(vocab_file), unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>",
        word_delimiter_token="|", do_lower_case=False,
    )  # fmt: skip
    config = _wav2vec2_config(vocab_size=len(CTC_VOCAB), pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = Wav2Vec2ForCTC(config).eval()
    processor = Wav2Vec2Processor(feature_extractor=_wav2vec2_feature_extractor(), tokenizer=tokenizer)
    model.save_pretrained(str(out))
    processor.save_pretrained(str(out))
    return out


def build_tiny_audio_classifier(
    out_dir: str | Path, labels: tuple[str, ...] = CLASSIFIER_LABELS, *, seed: int = 0
) -> Path:
    """``Wav2Vec2ForSequenceClassification`` with ``id2label`` from ``labels`` +
    ``Wav2Vec2FeatureExtractor`` (loads with ``AutoModelForAudioClassification``)."""
    import torch
    from transformers import Wav2Vec2ForSequenceClassification

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = _wav2vec2_config(
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
        classifier_proj_size=16,
        initializer_range=0.5,  # clearly different scores per class (0.02 gives ~uniform ones)
    )
    torch.manual_seed(seed)
    model = Wav2Vec2ForSequenceClassification(config).eval()
    model.save_pretrained(str(out))
    _wav2vec2_feature_extractor().save_pretrained(str(out))
    return out
