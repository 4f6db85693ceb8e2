"""CIDEr-D, BLEU and ROUGE-L against pycocoevalcap on the same corpus.

The reference is pycocoevalcap as COCOEvalCap runs it: ``PTBTokenizer`` on the whole corpus
(keyed by row position, one image per row), then ``Cider``/``Bleu(4)``/``Rouge``.
"""

from __future__ import annotations

import numpy as np
import pytest

from mmbatch.metrics import MetricError, build_metric, compute_local
from mmbatch.metrics.ptb import ptb_tokenize

from .metric_helpers import caption_corpus, relative_difference, requires_java, split_blocks

N_ROWS = 400


@pytest.fixture(scope="module")
def corpus() -> dict[str, list]:
    return caption_corpus(N_ROWS, seed=7)


def reference_scores(preds: list[str], refs: list[list[str]], tokenize: bool) -> dict[str, object]:
    """pycocoevalcap on the whole corpus, one image per row (keys are row positions)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    gts = {i: list(r) for i, r in enumerate(refs)}
    res = {i: [p] for i, p in enumerate(preds)}
    if tokenize:
        tok = PTBTokenizer()
        gts = tok.tokenize({i: [{"caption": c} for c in r] for i, r in gts.items()})
        res = tok.tokenize({i: [{"caption": c} for c in r] for i, r in res.items()})
    cider, cider_rows = Cider().compute_score(gts, res)
    bleu, bleu_rows = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, rouge_rows = Rouge().compute_score(gts, res)
    return {
        "gts": gts, "res": res,
        "cider": (cider, cider_rows), "bleu": (bleu, bleu_rows), "rouge_l": (rouge, rouge_rows),
    }


@pytest.fixture(scope="module")
def reference(corpus: dict[str, list]) -> dict[str, object]:
    return reference_scores(corpus["caption"], corpus["references"], tokenize=True)


@pytest.fixture(scope="module")
def tokenized(reference: dict) -> dict[str, list]:
    """The corpus as pycocoevalcap tokenised it, for the ``tokenizer: none`` runs."""
    n = len(reference["res"])
    return {
        "id": [f"img-{i}" for i in range(n)],
        "caption": [reference["res"][i][0] for i in range(n)],
        "references": [reference["gts"][i] for i in range(n)],
    }


def entry(metric: str, **kw: object) -> dict[str, object]:
    return {"metric": metric, "prediction": "caption", "references": "references", **kw}


def values(result) -> dict[str, float]:
    return {"value": result.value, **result.details}


@requires_java
def test_ptb_tokenize_matches_pycocoevalcap_and_is_blockwise(corpus: dict[str, list], reference: dict) -> None:
    flat_preds = ptb_tokenize(corpus["caption"])
    assert flat_preds == [reference["res"][i][0] for i in range(N_ROWS)]
    refs = [s for r in corpus["references"] for s in r]
    expected = [s for i in range(N_ROWS) for s in reference["gts"][i]]
    # tokenising in blocks gives the same tokens as tokenising the whole corpus
    blocks = [refs[a:a + 301] for a in range(0, len(refs), 301)]
    assert len(blocks) >= 4
    assert [s for b in blocks for s in ptb_tokenize(b)] == expected
    assert any(s == "" for s in expected) and any("東京" in s for s in expected)


@requires_java
def test_ptb_tokenize_line_breaks_inside_a_caption() -> None:
    # pycocoevalcap would emit extra lines for \r, U+2028 ... and misalign every later caption
    out = ptb_tokenize(["a\rb", "c\u2028dog.", "e\x0bf\x0cg", "h\u2029i", "last one"])
    assert out == ["a b", "c dog", "e f g", "h i", "last one"]
    assert ptb_tokenize([]) == []
    assert ptb_tokenize(["", "", "x"]) == ["", "", "x"]


@requires_java
@pytest.mark.parametrize("blocks", [1, 3])
def test_ptb_end_to_end_equals_pycocoevalcap(corpus: dict, reference: dict, blocks: int) -> None:
    parts = split_blocks(corpus, blocks, seed=blocks)
    cider = compute_local(build_metric(entry("cider")), parts)
    assert cider.value == pytest.approx(reference["cider"][0], rel=1e-12, abs=0)
    assert cider.count == N_ROWS
    if blocks == 1:
        bleu = compute_local(build_metric(entry("bleu")), parts)
        rouge = compute_local(build_metric(entry("rouge_l")), parts)
        assert [bleu.details[f"bleu_{k}"] for k in range(1, 5)] == list(reference["bleu"][0])
        assert bleu.value == reference["bleu"][0][3]
        assert rouge.value == pytest.approx(reference["rouge_l"][0], rel=1e-12, abs=0)


@pytest.mark.parametrize("blocks", [1, 3, 17])
def test_pretokenised_equals_pycocoevalcap_for_any_blocking(tokenized: dict, reference: dict, blocks: int) -> None:
    parts = split_blocks(tokenized, blocks, seed=100 + blocks)
    assert len(parts) == blocks
    cider = compute_local(build_metric(entry("cider", tokenizer="none")), parts)
    bleu = compute_local(build_metric(entry("bleu", tokenizer="none")), parts)
    rouge = compute_local(build_metric(entry("rouge_l", tokenizer="none")), parts)
    assert relative_difference(cider.value, reference["cider"][0]) <= 1e-12
    assert relative_difference(rouge.value, reference["rouge_l"][0]) <= 1e-12
    # BLEU is integer sums + pycocoevalcap's own formula: bit-identical
    assert [bleu.details[f"bleu_{k}"] for k in range(1, 5)] == list(reference["bleu"][0])
    assert cider.count == bleu.count == rouge.count == N_ROWS
    # an exact sum: every blocking gives the same bits
    single = compute_local(build_metric(entry("cider", tokenizer="none")), [tokenized])
    assert cider.value == single.value
    assert 0 < cider.value < 10 and 0 < bleu.value < 1 and 0 < rouge.value < 1


def test_per_row_scores_are_the_reference_rows(tokenized: dict, reference: dict) -> None:
    parts = split_blocks(tokenized, 5, seed=3)
    for metric, rows in (
        ("cider", reference["cider"][1]),
        ("rouge_l", reference["rouge_l"][1]),
        ("bleu", reference["bleu"][1][3]),
    ):
        result = compute_local(build_metric(entry(metric, tokenizer="none", per_row=True, name=f"my_{metric}")), parts)
        assert result.name == f"my_{metric}"
        assert result.row_scores is not None
        assert result.row_scores["id"] == tokenized["id"]
        np.testing.assert_array_equal(np.asarray(result.row_scores[f"my_{metric}"]), np.asarray(rows))


def test_duplicate_ids_are_scored_as_separate_rows(tokenized: dict, reference: dict) -> None:
    # ids only label per-row scores; every row is one image (pycocoevalcap keyed by position)
    dup = dict(tokenized, id=["same"] * N_ROWS)
    result = compute_local(build_metric(entry("cider", tokenizer="none")), split_blocks(dup, 3))
    assert result.count == N_ROWS
    assert relative_difference(result.value, reference["cider"][0]) <= 1e-12


def test_string_reference_column_is_one_reference() -> None:
    data = {"id": [1, 2, 3], "caption": ["a dog runs", "a cat", "two birds fly"],
            "references": ["a dog runs fast", "a black cat", "birds"]}
    expected = reference_scores(data["caption"], [[r] for r in data["references"]], tokenize=False)
    result = compute_local(build_metric(entry("cider", tokenizer="none")), [data])
    assert relative_difference(result.value, expected["cider"][0]) <= 1e-12


def test_cider_changes_with_the_corpus_document_frequencies(tokenized: dict) -> None:
    # the same rows score differently inside a different corpus: DF and log(#images) are global
    head = {k: v[:40] for k, v in tokenized.items()}
    alone = compute_local(build_metric(entry("cider", tokenizer="none", per_row=True)), [head])
    together = compute_local(build_metric(entry("cider", tokenizer="none", per_row=True)), [tokenized])
    a, t = np.asarray(alone.row_scores["cider"]), np.asarray(together.row_scores["cider"][:40])
    assert t.max() > 0 and np.abs(a - t).max() > 1e-3


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"references": [[]]}, "empty list"),
        ({"references": [None]}, "null"),
        ({"caption": [None]}, "null"),
        ({"references": [["ok", 3]]}, "int"),
    ],
)
def test_bad_rows_are_clear_errors(bad: dict, message: str) -> None:
    data = {"id": ["row-9"], "caption": ["a dog"], "references": [["a dog"]], **bad}
    with pytest.raises(MetricError, match=message) as info:
        compute_local(build_metric(entry("cider", tokenizer="none")), [data])
    assert "row-9" in str(info.value)


def test_empty_corpus_gives_nan_and_zero_count() -> None:
    for metric in ("cider", "bleu", "rouge_l"):
        result = compute_local(build_metric(entry(metric, tokenizer="none")), [])
        assert result.count == 0 and np.isnan(result.value)
        empty = {"id": [], "caption": [], "references": []}
        result = compute_local(build_metric(entry(metric, tokenizer="none")), [empty, empty])
        assert result.count == 0 and np.isnan(result.value)
