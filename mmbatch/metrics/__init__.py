"""Corpus metrics from mergeable per-block partial states (no Ray in here).

Each metric equals its reference tool run on the whole corpus on one machine:

============  ==================================================================
metric        reference
============  ==================================================================
cider         pycocoevalcap ``Cider`` after ``PTBTokenizer`` (two passes)
bleu          pycocoevalcap ``Bleu(4)``
rouge_l       pycocoevalcap ``Rouge``
meteor        pycocoevalcap ``Meteor`` (METEOR 1.5 jar)
wer, cer      jiwer 4 ``process_words`` / ``process_characters``
fid           pytorch-fid (InceptionV3 FID weights)
clip_score    torchmetrics ``CLIPScore`` (or the paper's 2.5 * max(cos, 0))
vqa_accuracy  the official VQA evaluation script (vqaEval.py)
recall_at_k   exact image<->text retrieval Recall@K from embedding columns
============  ==================================================================

Every module of this package is imported by the registry on its first lookup, so a new
metric is a new module with a ``@register_metric("name")`` class. The contract an engine
drives is :mod:`mmbatch.core.metric`.
"""

from mmbatch.core.metric import (
    Metric,
    MetricConfig,
    MetricError,
    MetricResult,
    build_metric,
    check_requirements,
    compute_local,
    get_metric,
    metric_names,
    register_metric,
)

__all__ = [
    "Metric",
    "MetricConfig",
    "MetricError",
    "MetricResult",
    "build_metric",
    "check_requirements",
    "compute_local",
    "get_metric",
    "metric_names",
    "register_metric",
]
