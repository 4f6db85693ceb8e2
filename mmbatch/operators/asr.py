"""Speech recognition behind ``transcribe``: its keys and one backend class per model family.

Each backend loads once per worker and maps a list of mono float32 waveforms (already
grouped by ``transcribe`` into sub-batches of similar length) to one result per waveform:
``{"text": str, "segments": [{start, end, text}] | None, "words": [{start, end, text}] | None}``.

* :class:`WhisperBackend` -- transformers ``WhisperForConditionalGeneration``: clips up to
  30 s in one batched ``generate``, from log-mel features that :class:`WhisperFeatures`
  computes in the prepare tasks (``preprocess: tasks``) or in the worker; longer clips with
  Whisper's own sequential long-form decoding (full-length features, ``attention_mask``,
  timestamp-driven seeking), batched, their features always computed in the worker.
* :class:`CTCBackend` -- any ``AutoModelForCTC`` (Wav2Vec2, HuBERT, ...): padded batch,
  argmax over the frames of each clip's own length, ``processor.batch_decode``.
* :class:`CTranslate2Backend` -- faster-whisper on a CTranslate2 model: ``WhisperModel.transcribe``
  per clip, or ``BatchedInferencePipeline`` (short clips of many rows in one batch; long
  clips as VAD chunks) with ``batched: true``.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from .generation import GenerationConfig, generate_kwargs
from .model import ModelOperator

Result = dict[str, Any]

SPANS = pa.list_(pa.struct([("start", pa.float64()), ("end", pa.float64()), ("text", pa.string())]))


class TranscribeConfig(GenerationConfig):
    audio: str = Field("waveform", description="waveform column from decode_audio")
    output: str = Field("text", description="transcript column; also <output>_segments / <output>_words")
    backend: Literal["transformers", "ctranslate2"] = Field(
        "transformers", description="transformers (Whisper or CTC, from the config) or ctranslate2 (faster-whisper)"
    )
    language: str | None = Field(None, description="Whisper language code or name; None: detect per clip")
    task: Literal["transcribe", "translate"] = "transcribe"
    timestamps: Literal["none", "segment", "word"] = Field(
        "none", description="segment: <output>_segments; word: also <output>_words (list<struct{start,end,text}>)"
    )
    sample_rate: int = Field(16_000, description="sample rate of the waveform column")
    preprocess: Literal["tasks", "worker"] = Field(
        "tasks",
        description="transformers Whisper: tasks: the log-mel features of clips up to 30 s are computed in "
        "parallel CPU tasks before the model worker, which only runs generate (longer clips and CTC models "
        "get theirs in the worker, as with worker); worker: all in the model worker",
    )
    max_new_tokens: int | None = Field(None, ge=1, description="per 30 s window; default: the model's limit")
    condition_on_previous_text: bool = Field(False, description="long-form: prompt each window with the last")
    max_batch_seconds: float = Field(
        480.0, gt=0, description="padded audio seconds per model call (Whisper pads clips to 30 s)"
    )
    compute_type: str = Field("default", description="ctranslate2: int8, int8_float16, float16, float32, ...")
    batched: bool = Field(False, description="ctranslate2: faster-whisper's BatchedInferencePipeline")
    vad_filter: bool = Field(False, description="ctranslate2 (not batched): skip non-speech with Silero VAD")
    reference: str | None = Field(None, description="reference transcript column: adds a per-row 'wer' column")
    wer_normalizer: Literal["none", "whisper_english"] = Field(
        "none", description="text normalisation before per-row WER (as the wer metric's 'normalizer')"
    )


AsrOperator = ModelOperator[TranscribeConfig]


def span(start: float, end: float, text: str) -> dict[str, Any]:
    return {"start": float(start), "end": float(end), "text": text.strip()}


class WhisperFeatures:
    """Whisper's feature extractor on clips up to 30 s (one window): ``(n_mels, 3000)`` log-mel
    features per clip, each clip's own (the same alone as in any batch), and the frame mask
    that tells ``generate`` where the clip ends. Run in the prepare tasks or in the worker."""

    def __init__(self, extractor: Any, sample_rate: int) -> None:
        self.extractor, self.sample_rate = extractor, sample_rate
        self.window: int = extractor.n_samples  # 30 s of samples

    def __call__(self, waves: list[np.ndarray], **kwargs: Any) -> Any:
        return self.extractor(waves, sampling_rate=self.sample_rate, return_attention_mask=True, **kwargs)

    def short(self, waves: list[np.ndarray]) -> np.ndarray:
        """``(n, n_mels, 3000)`` float32 features of clips up to 30 s, padded to 30 s."""
        return np.asarray(self(waves, return_tensors="np")["input_features"], dtype=np.float32)

    def mask(self, samples: list[int]) -> np.ndarray:
        """The frame mask the extractor returns with :meth:`short`'s features, from the clips'
        lengths in samples: frame k is a clip's when it starts within the clip."""
        frames = np.arange(self.extractor.nb_max_frames) * self.extractor.hop_length
        return (frames[None, :] < np.asarray(samples)[:, None]).astype(np.int32)


class WhisperBackend:
    """transformers Whisper: short-form batches and sequential long-form batches."""

    def __init__(self, op: AsrOperator, path: str) -> None:
        from transformers import AutoModelForSpeechSeq2Seq, AutoProcessor

        cfg = self.cfg = op.config
        self.op = op
        self.model = op.load_model(AutoModelForSpeechSeq2Seq, path)
        self.processor = op.load_processor(AutoProcessor, path)
        self.tokenizer = self.processor.tokenizer
        self.features = WhisperFeatures(self.processor.feature_extractor, cfg.sample_rate)
        self.window = self.features.window
        gen = self.model.generation_config
        kw: dict[str, Any] = {"condition_on_prev_tokens": cfg.condition_on_previous_text}
        if getattr(gen, "is_multilingual", False):
            kw["task"] = cfg.task
            if cfg.language:
                kw["language"] = cfg.language
        elif cfg.task == "translate" or (cfg.language or "en") not in ("en", "english"):
            raise ValueError(f"{cfg.model} is an English-only Whisper: it cannot {cfg.task} '{cfg.language}'")
        if cfg.timestamps != "none":
            kw |= {"return_timestamps": True, "return_segments": True}
        if cfg.timestamps == "word":
            kw["return_token_timestamps"] = True
        self.kwargs = kw

    def transcribe(self, waves: list[np.ndarray]) -> list[Result]:
        """Clips up to 30 s: 30 s log-mel windows, one ``generate``. Longer: as the Whisper
        docs prescribe for sequential long-form decoding -- full-length features (no
        truncation, padded to the longest clip) with their attention mask, and timestamps
        on (the decoder seeks from window to window by its predicted timestamps). In the
        largest sub-batches that fit the device."""
        return self.op.fitted(len(waves), lambda start, stop: self.generate(waves[start:stop]))

    def transcribe_prepared(self, features: np.ndarray, samples: list[int]) -> list[Result]:
        """Clips up to 30 s from their prepared features (:meth:`WhisperFeatures.short`) and
        lengths in samples: copied to the device, one ``generate``; as :meth:`transcribe`."""
        mask = self.features.mask(samples)
        return self.op.fitted(len(features), lambda start, stop: self.decode(
            self.op.tensor(features[start:stop], self.op.model_dtype), self.op.tensor(mask[start:stop]), long=False))

    def generate(self, waves: list[np.ndarray]) -> list[Result]:
        long = max(len(w) for w in waves) > self.window
        fe_kwargs: dict[str, Any] = {"truncation": False, "padding": "longest"} if long else {}
        inputs = self.features(waves, return_tensors="pt", **fe_kwargs)
        return self.decode(
            inputs["input_features"].to(self.op.device, self.op.model_dtype),
            inputs["attention_mask"].to(self.op.device),
            long,
        )

    def decode(self, features: Any, mask: Any, long: bool) -> list[Result]:
        """``generate`` on features and frame mask already on the device -> one result per clip."""
        kwargs = self.kwargs | generate_kwargs(self.cfg) | ({"return_timestamps": True} if long else {})
        with self.op.on_device():
            out = self.model.generate(input_features=features, attention_mask=mask, **kwargs)
        sequences = out["sequences"] if isinstance(out, dict) else out
        texts = self.tokenizer.batch_decode(sequences, skip_special_tokens=True)
        results: list[Result] = [{"text": t.strip()} for t in texts]
        for r, segs in zip(results, out["segments"] if isinstance(out, dict) else [], strict=False):
            r["segments"] = [
                span(s["start"], s["end"], self.tokenizer.decode(s["tokens"], skip_special_tokens=True)) for s in segs
            ]
            if self.cfg.timestamps == "word":  # the segments' token times are absolute (long-form too)
                ids = [t for s in segs for t in s["tokens"].tolist()]
                r["words"] = self.words(ids, [t for s in segs for t in s["token_timestamps"].tolist()])
        return results

    def words(self, ids: list[int], times: list[float]) -> list[dict[str, Any]]:
        """Group text tokens into words (a new word at each leading space); token k spans
        (times[k-1], times[k]), as transformers' ASR pipeline reads ``token_timestamps``."""
        eot = self.tokenizer.convert_tokens_to_ids("<|endoftext|>")  # specials and timestamps follow it
        words: list[dict[str, Any]] = []
        for k, tok in enumerate(ids):
            if tok >= eot:
                continue
            start, end = (times[k - 1] if k else 0.0), times[k]
            piece = self.tokenizer.convert_ids_to_tokens(tok)
            if not words or piece.startswith("Ġ"):
                words.append({"ids": [tok], "start": start, "end": end})
            else:
                words[-1]["ids"].append(tok)
                words[-1]["end"] = end
        return [span(w["start"], w["end"], self.tokenizer.decode(w["ids"])) for w in words]


class CTCBackend:
    """Any ``AutoModelForCTC`` with its processor: greedy (argmax) CTC decoding."""

    window = None

    def __init__(self, op: AsrOperator, path: str) -> None:
        from transformers import AutoModelForCTC, AutoProcessor

        cfg = self.cfg = op.config
        if cfg.timestamps == "segment" or cfg.task == "translate":
            raise ValueError("CTC models transcribe only, with timestamps: none or word")
        self.op = op
        self.model = op.load_model(AutoModelForCTC, path)
        self.processor = op.load_processor(AutoProcessor, path)
        self.seconds_per_frame = self.model.config.inputs_to_logits_ratio / cfg.sample_rate

    def transcribe(self, waves: list[np.ndarray]) -> list[Result]:

        inputs = self.processor(waves, sampling_rate=self.cfg.sample_rate, return_tensors="pt", padding="longest")
        mask = inputs.get("attention_mask")
        with self.op.on_device():
            logits = self.model(
                inputs["input_values"].to(self.op.device, self.op.model_dtype),
                attention_mask=None if mask is None else mask.to(self.op.device),
            ).logits
        ids = logits.argmax(dim=-1).cpu()
        if mask is not None:  # frames past each clip's own end are padding: blank them
            lengths = self.model._get_feat_extract_output_lengths(mask.sum(-1)).tolist()
            for row, n in enumerate(lengths):
                ids[row, int(n) :] = self.processor.tokenizer.pad_token_id
        words = self.cfg.timestamps == "word"
        out = self.processor.batch_decode(ids, output_word_offsets=words)
        texts = out.text if words else out
        results: list[Result] = [{"text": t.strip()} for t in texts]
        if words:
            for r, offsets in zip(results, out.word_offsets, strict=True):
                f = self.seconds_per_frame
                r["words"] = [span(w["start_offset"] * f, w["end_offset"] * f, w["word"]) for w in offsets]
        return results


class CTranslate2Backend:
    """faster-whisper on a CTranslate2 Whisper model (``compute_type`` int8, float16, ...)."""

    def __init__(self, op: AsrOperator, path: str) -> None:
        import ctranslate2
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        cfg = self.cfg = op.config
        gpu = op.resources.gpus > 0 and ctranslate2.get_cuda_device_count() > 0
        threads = cfg.threads or max(1, int(round(op.resources.cpus)))
        self.model = WhisperModel(path, device="cuda" if gpu else "cpu", compute_type=cfg.compute_type, cpu_threads=threads)
        self.pipeline = BatchedInferencePipeline(self.model)
        self.window = self.model.feature_extractor.n_samples if cfg.batched else None
        self.kwargs: dict[str, Any] = {
            "language": cfg.language,
            "task": cfg.task,
            "beam_size": cfg.num_beams,
            "temperature": (cfg.temperature or 1.0) if cfg.do_sample else 0.0,
            "word_timestamps": cfg.timestamps == "word",
            "max_new_tokens": cfg.max_new_tokens,
            "condition_on_previous_text": cfg.condition_on_previous_text,
        }
        if cfg.repetition_penalty is not None:
            self.kwargs["repetition_penalty"] = cfg.repetition_penalty

    @staticmethod
    def result(segments: Any, offset: float = 0.0) -> Result:
        segments = list(segments)
        return {
            "text": "".join(s.text for s in segments).strip(),
            "segments": [span(s.start - offset, s.end - offset, s.text) for s in segments],
            "words": [span(w.start - offset, w.end - offset, w.word) for s in segments for w in s.words or []],
        }

    def transcribe(self, waves: list[np.ndarray]) -> list[Result]:
        cfg = self.cfg
        if not cfg.batched:
            return [self.result(self.model.transcribe(w, vad_filter=cfg.vad_filter, **self.kwargs)[0]) for w in waves]
        if self.window is not None and max(len(w) for w in waves) > self.window:  # long clips: VAD chunks
            return [
                self.result(self.pipeline.transcribe(w, vad_filter=True, batch_size=16, **self.kwargs)[0])
                for w in waves
            ]
        return self.short_batch(waves)

    def short_batch(self, waves: list[np.ndarray]) -> list[Result]:
        """Clips of up to 30 s from many rows in one batched ``generate``: the clips are laid
        end to end, each from a whole second on, and passed as ``clip_timestamps``; every
        clip is cut out again and decoded on its own, exactly as when it is transcribed
        alone. Segments come back tagged with their clip's start (``seek``, in frames)."""
        sr = self.cfg.sample_rate
        starts = np.cumsum([0] + [math.ceil(len(w) / sr) + 1 for w in waves])
        audio = np.zeros(int(starts[-1]) * sr, dtype=np.float32)
        clips = []
        for w, s in zip(waves, starts[:-1].tolist(), strict=False):
            audio[s * sr : s * sr + len(w)] = w
            clips.append({"start": float(s), "end": s + (len(w) + 0.5) / sr})  # +0.5: exact int() cut
        multilingual = self.cfg.language is None and self.model.model.is_multilingual
        segments, _ = self.pipeline.transcribe(
            audio, clip_timestamps=clips, batch_size=len(waves), multilingual=multilingual, vad_filter=False, **self.kwargs
        )
        fps = self.model.frames_per_second
        row_of = {int(s) * fps: i for i, s in enumerate(starts[:-1].tolist())}
        per_row: list[list[Any]] = [[] for _ in waves]
        for seg in segments:
            per_row[row_of[seg.seek]].append(seg)
        return [self.result(segs, float(s)) for segs, s in zip(per_row, starts[:-1].tolist(), strict=True)]
