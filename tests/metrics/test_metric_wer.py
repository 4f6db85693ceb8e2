"""WER / CER against jiwer 4 run on all pairs at once."""

from __future__ import annotations

import json
import random

import jiwer
import pytest

from mmbatch.metrics import MetricError, build_metric, check_requirements, compute_local

from .metric_helpers import WORDS, sentence, split_blocks


def asr_corpus(n: int, seed: int) -> dict[str, list]:
    """Pairs with unicode, punctuation, tabs, empty references and hypotheses, duplicates."""
    rng = random.Random(seed)
    refs, hyps = [], []
    for _ in range(n):
        if refs and rng.random() < 0.05:
            j = rng.randrange(len(refs))
            refs.append(refs[j])
            hyps.append(hyps[j])
            continue
        ref = sentence(rng, 20)
        words = ref.split()
        hyp_words = []
        for w in words:
            r = rng.random()
            if r < 0.1:
                continue  # deletion
            hyp_words.append(rng.choice(WORDS) if r < 0.2 else w)  # substitution
            if rng.random() < 0.05:
                hyp_words.append(rng.choice(WORDS))  # insertion
        hyp = " ".join(hyp_words)
        if rng.random() < 0.05:
            hyp = hyp.replace(" ", "\t", 1)
        refs.append(ref)
        hyps.append(hyp if rng.random() > 0.03 else "")
    return {"id": list(range(n)), "hyp": hyps, "ref": refs}


@pytest.fixture(scope="module")
def corpus() -> dict[str, list]:
    data = asr_corpus(500, seed=5)
    assert "" in data["ref"] and "" in data["hyp"]
    return data


def entry(metric: str, **kw: object) -> dict[str, object]:
    return {"metric": metric, "prediction": "hyp", "reference": "ref", **kw}


@pytest.mark.parametrize("blocks", [1, 3, 17])
def test_wer_and_cer_equal_jiwer_for_any_blocking(corpus: dict, blocks: int) -> None:
    parts = split_blocks(corpus, blocks, seed=blocks)
    words = jiwer.process_words(corpus["ref"], corpus["hyp"])
    chars = jiwer.process_characters(corpus["ref"], corpus["hyp"])
    wer = compute_local(build_metric(entry("wer")), parts)
    cer = compute_local(build_metric(entry("cer")), parts)
    assert wer.value == words.wer and cer.value == chars.cer  # integer counts: exact
    assert (wer.details["hits"], wer.details["substitutions"], wer.details["deletions"],
            wer.details["insertions"]) == (words.hits, words.substitutions, words.deletions, words.insertions)
    assert cer.details["insertions"] == chars.insertions
    assert wer.count == cer.count == 500
    assert 0.05 < wer.value < 1 and 0.05 < cer.value < 1


def test_per_row_rates_equal_jiwer_per_pair(corpus: dict) -> None:
    parts = split_blocks(corpus, 4, seed=1)
    wer = compute_local(build_metric(entry("wer", per_row=True)), parts)
    cer = compute_local(build_metric(entry("cer", per_row=True, name="char_error")), parts)
    assert wer.row_scores["id"] == corpus["id"] and cer.row_scores["id"] == corpus["id"]
    expected_wer = [float(jiwer.wer(r, h)) for r, h in zip(corpus["ref"], corpus["hyp"], strict=True)]
    expected_cer = [float(jiwer.cer(r, h)) for r, h in zip(corpus["ref"], corpus["hyp"], strict=True)]
    assert wer.row_scores["wer"] == expected_wer
    assert cer.row_scores["char_error"] == expected_cer


def test_whisper_english_normalizer_matches_transformers_copy(corpus: dict) -> None:
    """The normaliser is openai-whisper's; transformers carries another copy of it."""
    from importlib.resources import files

    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    mapping = json.loads(files("whisper_normalizer").joinpath("normalizers/english.json").read_text())
    norm = EnglishTextNormalizer(mapping)
    extra = {"id": [10_001, 10_002, 10_003],
             "hyp": ["Hello Mr. Smith, it's $20.50 — colour?", "twenty-one apples", "um, okay"],
             "ref": ["hello mister smith it is 20.50 dollars color", "21 apples", "okay"]}
    data = {k: corpus[k] + extra[k] for k in corpus}
    result = compute_local(build_metric(entry("wer", normalizer="whisper_english", per_row=True)),
                           split_blocks(data, 3))
    refs = [norm(x) for x in data["ref"]]
    hyps = [norm(x) for x in data["hyp"]]
    assert result.value == jiwer.process_words(refs, hyps).wer
    assert result.row_scores["wer"][-3:] == [float(jiwer.wer(r, h)) for r, h in zip(refs[-3:], hyps[-3:], strict=True)]
    assert result.row_scores["wer"][-1] == 0.0  # "um" is a filler the normaliser drops
    plain = compute_local(build_metric(entry("wer")), [data])
    assert plain.value != result.value


def test_references_without_words_follow_jiwer() -> None:
    data = {"id": [1, 2, 3], "hyp": ["a b", "", "c"], "ref": ["", "  ", ""]}
    result = compute_local(build_metric(entry("wer")), split_blocks(data, 2))
    expected = jiwer.process_words(data["ref"], data["hyp"])
    assert result.value == float(expected.wer) == 3.0  # jiwer: the insertion count
    assert result.details["reference_words"] == 0


def test_null_text_is_a_clear_error() -> None:
    with pytest.raises(MetricError, match="'ref' of row 7 is null"):
        compute_local(build_metric(entry("wer")), [{"id": [7], "hyp": ["a"], "ref": [None]}])


def test_whisper_normalizer_is_a_checked_requirement(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "whisper_normalizer" else real(name, *a))
    check_requirements(build_metric(entry("wer")))  # not needed without the option
    with pytest.raises(MetricError, match=r"whisper_normalizer.*pip install 'mmbatch\[metrics\]'"):
        check_requirements(build_metric(entry("wer", normalizer="whisper_english")))
