"""The metric contract: registry, configs, requirement checks, the pass protocol, exact sums."""

from __future__ import annotations

import importlib.util
import math
import random
import shutil
from typing import Any

import numpy as np
import pydantic
import pytest

from mmbatch.core.metric import METRICS
from mmbatch.metrics import (
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
from mmbatch.metrics._common import ScoreSum, exact_units, units_to_float

ALL = ["bleu", "cer", "cider", "clip_score", "fid", "meteor", "recall_at_k", "rouge_l", "vqa_accuracy", "wer"]


def test_registry_lists_every_metric_and_rejects_duplicates() -> None:
    assert metric_names() == ALL
    for name in ALL:
        cls = get_metric(name)
        assert cls.name == name and issubclass(cls.Config, MetricConfig)
    with pytest.raises(MetricError, match="registered twice"):
        register_metric("cider")(type("Other", (Metric,), {}))
    with pytest.raises(MetricError, match="unknown metric 'cidr'.*cider"):
        get_metric("cidr")


def test_configs_are_strict_and_frozen() -> None:
    with pytest.raises(pydantic.ValidationError, match="refrences"):
        build_metric({"metric": "cider", "prediction": "c", "refrences": "r"})
    with pytest.raises(pydantic.ValidationError, match="references"):
        build_metric({"metric": "cider", "prediction": "c"})
    with pytest.raises(MetricError, match="without a 'metric' key"):
        build_metric({"prediction": "c"})
    metric = build_metric({"metric": "bleu", "prediction": "c", "references": "r", "name": "bleu4"})
    assert metric.output_name == "bleu4" and metric.input_columns() == ["c", "r"]
    with pytest.raises(pydantic.ValidationError):
        metric.config.prediction = "x"  # type: ignore[misc]
    cfg = get_metric("wer").Config(metric="wer", prediction="h", reference="r")
    assert build_metric(cfg).config is cfg and cfg.output_name == "wer"
    with pytest.raises(MetricError, match="given to metric 'cer'"):
        get_metric("cer")(cfg)


def test_input_columns_of_every_metric() -> None:
    cases = {
        "cider": ({"prediction": "p", "references": "r"}, ["p", "r"]),
        "meteor": ({"prediction": "p", "references": "r"}, ["p", "r"]),
        "cer": ({"prediction": "p", "reference": "r"}, ["p", "r"]),
        "fid": ({"images": "i", "reference_stats": "s.npz"}, ["i"]),
        "clip_score": ({"images": "i", "text": "t", "model": "m"}, ["i", "t"]),
        "vqa_accuracy": ({"prediction": "p", "references": "r", "answer_type": "t"}, ["p", "r", "t"]),
        "recall_at_k": ({"image_embedding": "i", "text_embedding": "t", "group": "g"}, ["i", "t", "g"]),
    }
    for name, (keys, cols) in cases.items():
        assert build_metric({"metric": name, **keys}).input_columns() == cols


def test_missing_python_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "jiwer" else real(name, *a))
    with pytest.raises(MetricError, match=r"metric 'wer'.*'jiwer' is missing: pip install 'mmbatch\[metrics\]'"):
        check_requirements(get_metric("wer"))
    check_requirements(get_metric("vqa_accuracy"))


def test_missing_java_says_what_needs_it_and_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "java" else real(name, *a, **k))
    for name in ("cider", "meteor"):
        with pytest.raises(MetricError) as info:
            check_requirements(get_metric(name))
        message = str(info.value)
        assert "'java' not found" in message and "PTBTokenizer" in message and "METEOR" in message
        assert "apt-get install -y default-jre-headless" in message
    # already tokenised text needs no Java for CIDEr (METEOR always does)
    check_requirements(build_metric({"metric": "cider", "prediction": "p", "references": "r", "tokenizer": "none"}))
    with pytest.raises(MetricError, match="java"):
        check_requirements(build_metric({"metric": "meteor", "prediction": "p", "references": "r", "tokenizer": "none"}))
    from mmbatch.metrics.ptb import ptb_tokenize

    with pytest.raises(MetricError, match="default-jre-headless"):
        ptb_tokenize(["a sentence"])


class _Passes(Metric):
    """A three-pass toy metric that records how it is driven."""

    class Config(MetricConfig):
        column: str

    passes = 3

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.calls: list[tuple] = []

    def input_columns(self) -> list[str]:
        return [self.config.column]

    def setup(self) -> None:
        self.calls.append(("setup",))

    def partial(self, batch: dict[str, list], pass_index: int, broadcast: Any) -> Any:
        self.calls.append(("partial", pass_index, broadcast))
        return sum(batch[self.config.column]) * (pass_index + 1)

    def merge(self, states: list[Any]) -> Any:
        return sum(states)

    def after_pass(self, pass_index: int, merged: Any) -> Any:
        self.calls.append(("after_pass", pass_index, merged))
        return f"b{pass_index}:{merged}"

    def finalize(self, merged: Any, broadcast: Any) -> MetricResult:
        self.calls.append(("finalize", merged, broadcast))
        return MetricResult(self.output_name, float(merged), 0)


def test_compute_local_drives_passes_in_order() -> None:
    METRICS.unregister("toy_passes")
    cls = register_metric("toy_passes")(_Passes)
    try:
        metric = cls(cls.Config(metric="toy_passes", column="x"))
        result = compute_local(metric, [{"id": [1, 2], "x": [1, 2]}, {"id": [3], "x": [4]}])
    finally:
        METRICS.unregister("toy_passes")
    assert metric.calls == [
        ("setup",),
        ("partial", 0, None), ("partial", 0, None), ("after_pass", 0, 7),
        ("partial", 1, "b0:7"), ("partial", 1, "b0:7"), ("after_pass", 1, 14),
        ("partial", 2, "b1:14"), ("partial", 2, "b1:14"),
        ("finalize", 21, "b1:14"),
    ]
    assert result == MetricResult("toy_passes", 21.0, 0, {}, None)


def test_exact_sums_are_exact_and_order_free() -> None:
    rng = random.Random(0)
    values = [rng.uniform(-1, 1) * 10 ** rng.randint(-300, 300) for _ in range(2000)]
    values += [5e-324, -5e-324, 1e307, -1e307, 0.1, 0.2, 0.3]
    assert units_to_float(sum(exact_units(v) for v in values)) == math.fsum(values)
    ids = list(range(len(values)))
    parts = [ScoreSum.of(ids[i:i + 100], values[i:i + 100], keep_rows=True) for i in range(0, len(values), 100)]
    shuffled = parts[:]
    rng.shuffle(shuffled)
    a, b = ScoreSum.merge(parts), ScoreSum.merge(shuffled)
    assert a.mean() == b.mean() == math.fsum(values) / len(values)
    assert a.ids == list(range(len(values))) and a.scores == values
    assert ScoreSum.merge([ScoreSum.of([1], [1.0], keep_rows=False), a]).ids is None
    assert math.isnan(ScoreSum().mean())
    with pytest.raises(MetricError, match="non-finite"):
        exact_units(float("nan"))
    # the classic case a running float sum gets wrong
    assert ScoreSum.of([0, 1, 2], [1e16, 1.0, -1e16], False).mean() == pytest.approx(1 / 3)
    assert np.float64(1e16) + 1.0 - 1e16 == 0.0


def compute_pickled(metric: Metric, batches: list[dict[str, list]]) -> MetricResult:
    """``compute_local`` the way a cluster runs it: the metric, every state and every
    broadcast cross a process boundary (pickle), and each block gets a fresh metric copy."""
    import pickle

    shipped = pickle.dumps(metric)
    broadcast: Any = None
    merged: Any = None
    for p in range(metric.passes):
        states = []
        for batch in batches:
            worker = pickle.loads(shipped)
            worker.setup()
            states.append(pickle.dumps(worker.partial(batch, p, pickle.loads(pickle.dumps(broadcast)))))
        merged = metric.merge([pickle.loads(s) for s in states])
        if p < metric.passes - 1:
            broadcast = metric.after_pass(p, merged)
    return metric.finalize(merged, broadcast)


def test_states_and_broadcasts_survive_pickling() -> None:
    rng = np.random.default_rng(0)
    data = {
        "id": list(range(40)),
        "pred": [f"a dog {w} on the grass" for w in rng.choice(["runs", "sits", "plays", "eats"], 40)],
        "refs": [["a dog runs on the grass", "a brown dog plays"] for _ in range(40)],
        "answers": [["runs"] * 4 + ["sits"] * 6 for _ in range(40)],
        "img": rng.normal(size=(40, 8)).tolist(),
        "txt": rng.normal(size=(40, 8)).tolist(),
    }
    entries = [
        {"metric": "cider", "prediction": "pred", "references": "refs", "tokenizer": "none", "per_row": True},
        {"metric": "bleu", "prediction": "pred", "references": "refs", "tokenizer": "none", "per_row": True},
        {"metric": "rouge_l", "prediction": "pred", "references": "refs", "tokenizer": "none"},
        {"metric": "wer", "prediction": "pred", "reference": "pred", "per_row": True},
        {"metric": "vqa_accuracy", "prediction": "pred", "references": "answers"},
        {"metric": "recall_at_k", "image_embedding": "img", "text_embedding": "txt"},
    ]
    from .metric_helpers import split_blocks

    for e in entries:
        blocks = split_blocks(data, 3, seed=1)
        assert compute_pickled(build_metric(e), blocks) == compute_local(build_metric(e), blocks), e["metric"]
