"""classify_audio: audio classification (sound events, keyword spotting, language id, ...)."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from mmbatch.core.columns import Column
from mmbatch.core.requirements import Requirements

from .base import register
from .batching import length_buckets
from .labels import Classifier, LabelConfig, label_names


class ClassifyAudioConfig(LabelConfig):
    audio: str = Field("waveform", description="waveform column from decode_audio")
    sample_rate: int = Field(16_000, description="sample rate of the waveform column")
    max_batch_seconds: float = Field(480.0, gt=0, description="padded audio seconds per model call")


@register("classify_audio")
class ClassifyAudio(Classifier[ClassifyAudioConfig]):
    """Top-k labels from any ``AutoModelForAudioClassification`` (Wav2Vec2, HuBERT, AST,
    Whisper encoders, ...) with its ``AutoFeatureExtractor``: softmax over ``id2label``.

    Input: ``audio`` (mono float32 waveform). Outputs: ``output`` (string), ``<output>_topk``
    (list<string>), ``<output>_scores`` (list<float32>), as ``classify`` writes them. Rows
    of similar duration are batched together so short clips are not padded to long ones.
    Resources: 1 actor, 1 CPU by default; set ``resources.gpus`` for CUDA.
    """

    default_batch_size = 32
    requires = Requirements(("torch", "transformers"), "audio")

    def inputs(self) -> dict[str, str]:
        return {self.config.audio: "mono float32 waveform"}

    def load(self, path: str) -> None:
        from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

        self.model = self.load_model(AutoModelForAudioClassification, path)
        self.extractor = self.load_processor(AutoFeatureExtractor, path)
        self.label_names = label_names(self.model.config)

    def probabilities(self, waves: list[np.ndarray]) -> Any:

        cfg = self.config
        inputs = self.extractor(waves, sampling_rate=cfg.sample_rate, return_tensors="pt", padding=True)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        main = self.model.main_input_name
        inputs[main] = inputs[main].to(self.model_dtype)
        with self.on_device():
            return self.model(**inputs).logits.float().softmax(dim=-1).cpu()

    def process(self, batch: dict[str, Column]) -> dict[str, Any]:
        import torch

        cfg = self.config
        waves = [np.asarray(w, dtype=np.float32) for w in batch[cfg.audio]]
        probs = torch.zeros(len(waves), len(self.label_names))
        for group in length_buckets([len(w) for w in waves], int(cfg.max_batch_seconds * cfg.sample_rate)):
            probs[group] = self.probabilities([waves[i] for i in group])
        return self.label_columns(probs)
