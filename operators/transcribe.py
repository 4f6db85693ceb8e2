"""transcribe: speech -> text with Whisper (transformers or CTranslate2) or CTC models."""

from __future__ import annotations

import importlib.util
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field, model_validator

from .generation import GenerationConfig
from .models import ModelOperator
from .registry import register

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

    @model_validator(mode="after")
    def _check_extras(self) -> TranscribeConfig:
        needs = {"faster_whisper": self.backend == "ctranslate2", "jiwer": self.reference is not None,
                 "whisper_normalizer": self.reference is not None and self.wer_normalizer != "none"}  # fmt: skip
        missing = [m for m, used in needs.items() if used and importlib.util.find_spec(m) is None]
        if missing:
            raise ValueError(f"needs {', '.join(missing)}: pip install 'mmbatch[audio,metrics]'")
        return self


def length_buckets(lengths: list[int], max_padded: int, window: int | None = None) -> list[list[int]]:
    """Indices grouped for batched inference: sorted by length, cut so that a group's padded
    size (rows x longest, every row counting at least ``window``) stays within ``max_padded``,
    and rows up to ``window`` never share a group with longer ones."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    groups: list[list[int]] = []
    for i in order:
        n = max(lengths[i], window or 0)
        crosses = window is not None and groups and lengths[groups[-1][-1]] <= window < lengths[i]
        if groups and not crosses and (len(groups[-1]) + 1) * n <= max_padded:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


@register("transcribe")
class Transcribe(ModelOperator):
    """Transcribe (or translate) speech.

    Input: ``audio`` (mono float32 waveform from decode_audio). Outputs: ``output`` (text),
    with ``timestamps`` also ``<output>_segments`` / ``<output>_words`` (list of
    {start, end, text}, seconds), with ``reference`` also ``wer`` (that row's jiwer WER).
    Backends: transformers Whisper (clips over 30 s by Whisper's sequential long-form
    decoding) or any ``AutoModelForCTC``, chosen from the model config; ``ctranslate2``:
    faster-whisper. Rows are sorted by duration and run in sub-batches of similar length.
    Resources: 1 actor, 1 CPU by default; give it ``resources.gpus`` for CUDA.
    """

    Config = TranscribeConfig
    default_batch_size = 16
    requires = ("torch", "transformers")
    extra = "audio"

    def inputs(self) -> dict[str, str]:
        return {self.config.audio: "mono float32 waveform"}

    def optional_inputs(self) -> dict[str, str]:
        return {self.config.reference: "reference transcript"} if self.config.reference else {}

    def outputs(self) -> dict[str, str]:
        cfg: TranscribeConfig = self.config  # type: ignore[assignment]
        cols = {cfg.output: "transcript"}
        if cfg.timestamps != "none":
            cols[f"{cfg.output}_segments"] = "segments: list<struct{start, end, text}>, seconds"
        if cfg.timestamps == "word":
            cols[f"{cfg.output}_words"] = "words: list<struct{start, end, text}>, seconds"
        if cfg.reference:
            cols["wer"] = f"word error rate of {cfg.output} against {cfg.reference}"
        return cols

    def output_types(self) -> dict[str, pa.DataType]:
        o = self.config.output
        return {o: pa.string(), f"{o}_segments": SPANS, f"{o}_words": SPANS, "wer": pa.float64()}

    def setup(self) -> None:
        if self.config.backend == "transformers":
            super().setup()  # torch threads, device, then load()
        else:
            from .asr_backends import CTranslate2Backend
            from .models import resolve_local_path

            self.backend: Any = CTranslate2Backend(self, resolve_local_path(self.config.model))
        self.normalize = _normalizer(self.config.wer_normalizer)

    def load(self, path: str) -> None:
        from transformers import AutoConfig

        from .asr_backends import CTCBackend, WhisperBackend

        try:
            model_type = AutoConfig.from_pretrained(path, **self.pretrained_kwargs()).model_type
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: no transformers config ({exc}); a CTranslate2 model needs backend: ctranslate2") from exc
        self.backend = WhisperBackend(self, path) if model_type == "whisper" else CTCBackend(self, path)
        self.model = self.backend.model

    def process(self, batch: dict[str, list[Any]]) -> dict[str, Any]:
        cfg: TranscribeConfig = self.config  # type: ignore[assignment]
        waves = [np.asarray(w, dtype=np.float32) for w in batch[cfg.audio]]
        results: list[dict[str, Any]] = [{}] * len(waves)
        max_padded = int(cfg.max_batch_seconds * cfg.sample_rate)
        for group in length_buckets([len(w) for w in waves], max_padded, self.backend.window):
            for i, r in zip(group, self.backend.transcribe([waves[i] for i in group]), strict=True):
                results[i] = r
        out: dict[str, Any] = {cfg.output: [r["text"] for r in results]}
        for kind in ("segments", "words"):
            if f"{cfg.output}_{kind}" in self.outputs():
                out[f"{cfg.output}_{kind}"] = [r.get(kind) or [] for r in results]
        if cfg.reference:
            if cfg.reference not in batch:
                raise KeyError(f"reference column '{cfg.reference}' is not in the input")
            out["wer"] = [row_wer(ref, r["text"], self.normalize) for ref, r in zip(batch[cfg.reference], results, strict=True)]
        return out


def _normalizer(name: str) -> Any:
    if name == "whisper_english":
        from whisper_normalizer.english import EnglishTextNormalizer

        return EnglishTextNormalizer()
    return None


def row_wer(reference: str | None, hypothesis: str, normalize: Any = None) -> float | None:
    """One row's WER with jiwer's default transforms (as the ``wer`` metric); None without a reference."""
    import jiwer

    if reference is None:
        return None
    if normalize is not None:
        reference, hypothesis = normalize(reference), normalize(hypothesis)
    return float(jiwer.process_words(reference, hypothesis).wer)
