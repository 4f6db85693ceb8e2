"""transcribe: speech -> text with Whisper (transformers or CTranslate2) or CTC models."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from mmbatch.core.columns import Column
from mmbatch.core.metric import AnyMetric, build_metric, row_scores
from mmbatch.core.requirements import Requirements

from .asr import SPANS, TranscribeConfig
from .base import register
from .batching import length_buckets
from .model import ModelOperator


@register("transcribe")
class Transcribe(ModelOperator[TranscribeConfig]):
    """Transcribe (or translate) speech.

    Input: ``audio`` (mono float32 waveform from decode_audio). Outputs: ``output`` (text),
    with ``timestamps`` also ``<output>_segments`` / ``<output>_words`` (list of
    {start, end, text}, seconds), with ``reference`` also ``wer`` (that row's jiwer WER).
    Backends: transformers Whisper (clips over 30 s by Whisper's sequential long-form
    decoding) or any ``AutoModelForCTC``, chosen from the model config; ``ctranslate2``:
    faster-whisper. Rows are sorted by duration and run in sub-batches of similar length.
    Resources: 1 actor, 1 CPU by default; give it ``resources.gpus`` for CUDA.
    """

    default_batch_size = 16
    requires = Requirements(("torch", "transformers"), "audio")

    def requirements(self) -> Requirements:
        cfg, needs = self.config, self.requires
        if cfg.backend == "ctranslate2":
            needs = needs.with_modules("faster_whisper", "ctranslate2")
        if cfg.reference:
            needs = needs.with_modules("jiwer", extra="metrics")
            if cfg.wer_normalizer != "none":
                needs = needs.with_modules("whisper_normalizer", extra="metrics")
        return needs

    def inputs(self) -> dict[str, str]:
        return {self.config.audio: "mono float32 waveform"}

    def upstream_config(self) -> dict[str, dict[str, Any]]:
        if self.config.backend == "ctranslate2":  # the samples faster-whisper itself would read
            return {self.config.audio: {"resampler": "faster_whisper"}}
        return {}

    def optional_inputs(self) -> dict[str, str]:
        return {self.config.reference: "reference transcript"} if self.config.reference else {}

    def outputs(self) -> dict[str, str]:
        cfg = self.config
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
            from .asr import CTranslate2Backend

            self.backend: Any = CTranslate2Backend(self, self.policy.local(self.config.model))
        self.wer = self.wer_metric()

    def wer_metric(self) -> AnyMetric | None:
        """The ``wer`` metric (through the registry) that scores each row against ``reference``."""
        cfg = self.config
        if not cfg.reference:
            return None
        metric = build_metric({"metric": "wer", "prediction": cfg.output, "reference": cfg.reference,
                               "normalizer": cfg.wer_normalizer, "per_row": True})  # fmt: skip
        metric.setup()
        return metric

    def load(self, path: str) -> None:
        from transformers import AutoConfig

        from .asr import CTCBackend, WhisperBackend

        try:
            model_type = self.load_processor(AutoConfig, path).model_type
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: no transformers config ({exc}); a CTranslate2 model needs backend: ctranslate2") from exc
        self.backend = WhisperBackend(self, path) if model_type == "whisper" else CTCBackend(self, path)
        self.model = self.backend.model

    def process(self, batch: dict[str, Column]) -> dict[str, Any]:
        cfg = self.config
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
        if self.wer is not None:
            if cfg.reference not in batch:
                raise KeyError(f"reference column '{cfg.reference}' is not in the input")
            out["wer"] = row_scores(self.wer, {cfg.output: out[cfg.output], cfg.reference: batch[cfg.reference]})
        return out

