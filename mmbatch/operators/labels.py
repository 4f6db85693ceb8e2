"""What every classifier shares: its keys (``output``, ``top_k``), its three output columns
and the mapping from class probabilities to top-k label names."""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
from pydantic import Field

from .model import ModelConfig, ModelOperator


class LabelConfig(ModelConfig):
    output: str = Field("label", description="top-1 label column; also <output>_topk and <output>_scores")
    top_k: int = Field(5, ge=1)


LC = TypeVar("LC", bound=LabelConfig)


def label_names(model_config: Any) -> list[str]:
    """A transformers config's ``id2label`` as a list indexed by class id."""
    id2label = model_config.id2label
    return [id2label[i] for i in range(len(id2label))]


def topk_columns(probs: Any, names: list[str], output: str, k: int) -> dict[str, Any]:
    """Rows of class probabilities (torch, [n, classes]) -> the three label columns shared by
    every classifier: ``output`` (top-1), ``<output>_topk`` and ``<output>_scores``."""
    import torch

    k = min(k, probs.shape[-1])
    scores, idx = torch.topk(probs.float().cpu(), k, dim=-1)
    topk = [[names[j] for j in row] for row in idx.tolist()]
    return {
        output: [t[0] for t in topk],
        f"{output}_topk": topk,
        f"{output}_scores": list(scores.numpy().astype(np.float32)),
    }


class Classifier(ModelOperator[LC]):
    """The base of every classifier: outputs ``<output>`` (top-1 label), ``<output>_topk``
    (list<string>) and ``<output>_scores`` (list<float32>) from ``self.label_names``."""

    label_names: list[str]

    def outputs(self) -> dict[str, str]:
        o = self.config.output
        return {o: "top-1 label", f"{o}_topk": "top-k labels", f"{o}_scores": "top-k probabilities"}

    def output_types(self) -> dict[str, pa.DataType]:
        o = self.config.output
        return {o: pa.string(), f"{o}_topk": pa.list_(pa.string()), f"{o}_scores": pa.list_(pa.float32())}

    def label_columns(self, probs: Any) -> dict[str, Any]:
        return topk_columns(probs, self.label_names, self.config.output, self.config.top_k)
