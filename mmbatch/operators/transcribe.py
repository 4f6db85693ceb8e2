"""transcribe: speech -> text with Whisper (transformers or CTranslate2) or CTC models."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from mmbatch.core.columns import Column
from mmbatch.core.metric import AnyMetric, build_metric, row_scores
from mmbatch.core.requirements import Requirements

from .asr import SPANS, TranscribeConfig, WhisperFeatures
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
    Whisper on transformers with ``preprocess: tasks`` (default): the log-mel features of
    clips up to 30 s are computed in parallel CPU tasks before the model worker, which copies
    them to its device and runs ``generate``; longer clips (their long-form features depend on
    the clips padded with them) and CTC models pass their waveform on to the worker, which
    extracts as with ``preprocess: worker``. Resources: 1 actor, 1 CPU by default; give it
    ``resources.gpus`` for CUDA.
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

    def prepared(self) -> dict[str, str]:
        if self.config.backend != "transformers" or self.config.preprocess != "tasks":
            return {}
        return {
            self.column("input_features"): "Whisper log-mel features (n_mels, 3000) of a clip up to 30 s; "
            "(0, 0) for the others",
            self.column("waveform"): "the waveform of a clip not prepared here (over 30 s, CTC); empty for the others",
            self.column("samples"): "the clip's length in samples",
        }

    def model_type(self, path: str) -> str:
        from transformers import AutoConfig

        try:
            return str(self.load_processor(AutoConfig, path).model_type)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: no transformers config ({exc}); a CTranslate2 model needs backend: ctranslate2") from exc

    def load_processors(self, path: str) -> None:
        from transformers import AutoFeatureExtractor

        self.features: WhisperFeatures | None = None  # CTC: the worker extracts
        if self.model_type(path) == "whisper":
            self.features = WhisperFeatures(self.load_processor(AutoFeatureExtractor, path), self.config.sample_rate)

    def load(self, path: str) -> None:
        from .asr import CTCBackend, WhisperBackend

        self.backend = WhisperBackend(self, path) if self.model_type(path) == "whisper" else CTCBackend(self, path)
        self.model = self.backend.model
        self.features = getattr(self.backend, "features", None)  # prepare() called without its stage

    def prepare(self, batch: dict[str, Column]) -> dict[str, Any]:
        waves = [np.asarray(w, dtype=np.float32) for w in batch[self.config.audio]]
        window = -1 if self.features is None else self.features.window
        short = [i for i, w in enumerate(waves) if len(w) <= window]
        features = [np.zeros((0, 0), self.transfer_dtype) for _ in waves]
        if self.features is not None and short:
            computed = self.features.short([waves[i] for i in short]).astype(self.transfer_dtype, copy=False)
            for i, f in zip(short, computed, strict=True):
                features[i] = f
        rest = [np.zeros(0, np.float32) if features[i].size else w for i, w in enumerate(waves)]
        return {
            self.column("input_features"): features,
            self.column("waveform"): rest,
            self.column("samples"): [len(w) for w in waves],
        }

    def process(self, batch: dict[str, Column]) -> dict[str, Any]:
        cfg = self.config
        features: Column | None = None
        if self.prepared():
            waves, features = batch[self.column("waveform")], batch[self.column("input_features")]
            samples = [int(n) for n in batch[self.column("samples")]]
        else:
            waves = [np.asarray(w, dtype=np.float32) for w in batch[cfg.audio]]
            samples = [len(w) for w in waves]
        results: list[dict[str, Any]] = [{}] * len(samples)
        max_padded = int(cfg.max_batch_seconds * cfg.sample_rate)
        for group in length_buckets(samples, max_padded, self.backend.window):
            if features is not None and features[group[0]].size:  # prepared: clips up to 30 s
                done = self.backend.transcribe_prepared(np.stack([features[i] for i in group]), [samples[i] for i in group])
            else:
                done = self.backend.transcribe([np.asarray(waves[i], dtype=np.float32) for i in group])
            for i, r in zip(group, done, strict=True):
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

