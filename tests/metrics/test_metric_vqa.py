"""VQA accuracy: hand-checked cases of the official vqaEval.py behaviour, the closed form of
the leave-one-out average, and blocking invariance."""

from __future__ import annotations

import random

import pytest

from mmbatch.metrics import build_metric, compute_local
from mmbatch.metrics.vqa import (
    normalize_answer,
    process_digits_articles,
    process_punctuation,
    vqa_accuracy,
)

from .metric_helpers import split_blocks


@pytest.mark.parametrize(
    "text, expected",
    [
        ("yes.", "yes"),
        ("3.5", "3.5"),  # a period before a digit stays
        ("3.", "3"),  # a period after a digit does not (the official look-behind is a typo)
        ("dr.who", "drwho"),
        ("a,b", "a b"),  # not touching a space: replaced by a space
        ("a, b", "a b"),  # touching a space: deleted
        ("x-y", "x y"),
        ("x - y", "x  y"),
        ("1,000", "1000"),  # digit,digit: every mark is deleted ...
        ("1,000 x-y (z)", "1000 xy z"),  # ... everywhere in the text
        ("hi!", "hi "),
        ("(yes)", " yes "),
        ("it's #1 & 50% *", "it's #1 & 50% *"),  # ' # & % * are not in the official list
        ("." * 40, "." * 8),  # re.UNICODE passed as the count: only 32 periods go
        ('a"b"c;d/e[f]g{h}i=j+k\\l_m>n<o@p`q?r', "a b c d e f g h i j k l m n o p q r"),
    ],
)
def test_process_punctuation(text: str, expected: str) -> None:
    assert process_punctuation(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The two dogs", "2 dogs"),
        ("none", "0"),
        ("zero one ten eleven", "0 1 10 eleven"),
        ("an apple a day", "apple day"),
        ("Dont  stop", "don't stop"),
        ("Im here", "im here"),  # the capitalised keys of the official table never match
        ("somebody'd", "somebodyd"),
        ("yall'll  youre", "y'all'll you're"),
    ],
)
def test_process_digits_articles(text: str, expected: str) -> None:
    assert process_digits_articles(text) == expected


def test_normalize_answer() -> None:
    assert normalize_answer(" Two\tdogs.\n") == "2 dogs"
    assert normalize_answer("Yes!") == "yes"
    assert normalize_answer("The 1,000 cats") == "1000 cats"


@pytest.mark.parametrize("matches, expected", [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)])
def test_leave_one_out_average(matches: int, expected: float) -> None:
    answers = ["cat"] * matches + ["dog"] * (10 - matches)
    if matches == 10:
        answers = ["cat"] * 10
    assert vqa_accuracy("cat", answers) == pytest.approx(expected, abs=1e-15)


def test_official_quirks_and_the_reference_option() -> None:
    # identical human answers are not normalised at all
    assert vqa_accuracy("yes", ["Yes"] * 10) == 0.0
    assert vqa_accuracy("yes", ["Yes"] * 10, normalize_references=True) == 1.0
    assert vqa_accuracy("two", ["two"] * 10) == 0.0  # the prediction becomes "2"
    assert vqa_accuracy("two", ["2"] * 10) == 1.0
    # differing human answers only get punctuation processing (no strip): "yes!" -> "yes "
    assert vqa_accuracy("yes", ["yes!"] * 4 + ["no"] * 6) == 0.0
    assert vqa_accuracy("yes", ["yes!"] * 4 + ["no"] * 6, normalize_references=True) == 1.0
    assert vqa_accuracy("a dog", ["dog"] * 3 + ["cat"] * 7) == pytest.approx(0.9)


def random_vqa(n: int, seed: int) -> tuple[dict[str, list], list[float]]:
    """Rows whose human answers are already normalised (as in the VQA annotations) and
    predictions written in ways that normalise to one of them; expected accuracy by counting."""
    rng = random.Random(seed)
    vocab = ["yes", "no", "2", "3", "10", "red", "blue car", "don't know", "tennis", "0"]
    spellings = {
        "yes": ["Yes", "yes.", " YES!", "yes"], "no": ["No", "no!", "no"],
        "2": ["two", "2", "Two.", "the two"], "3": ["three", "3", "a three"], "10": ["ten", "10"],
        "red": ["Red", "red.", "the red"], "blue car": ["a blue car", "Blue car", "blue  car"],
        "don't know": ["dont know", "Don't know"], "tennis": ["tennis", "Tennis!"], "0": ["none", "zero", "0"],
    }
    data: dict[str, list] = {"id": [], "pred": [], "answers": [], "type": []}
    expected = []
    for i in range(n):
        answers = [rng.choice(vocab[: rng.randint(1, len(vocab))]) for _ in range(10)]
        if rng.random() < 0.1:
            answers = [answers[0]] * 10
        target = rng.choice(vocab)
        pred = rng.choice(spellings[target]) if rng.random() < 0.9 else "something else"
        norm = target if pred != "something else" else pred
        m = answers.count(norm)
        expected.append(100 * (m * min(1, (m - 1) / 3) + (10 - m) * min(1, m / 3)) / 10)
        data["id"].append(i)
        data["pred"].append(pred)
        data["answers"].append(answers)
        data["type"].append("number" if target.isdigit() else "yes/no" if target in ("yes", "no") else "other")
    return data, expected


@pytest.mark.parametrize("blocks", [1, 3, 17])
def test_corpus_accuracy_for_any_blocking(blocks: int) -> None:
    data, expected = random_vqa(600, seed=2)
    metric = build_metric({"metric": "vqa_accuracy", "prediction": "pred", "references": "answers",
                           "answer_type": "type", "per_row": True})
    result = compute_local(metric, split_blocks(data, blocks, seed=blocks))
    assert result.count == 600
    assert result.row_scores["id"] == data["id"]
    assert result.row_scores["vqa_accuracy"] == pytest.approx(expected, abs=1e-12)
    assert result.value == pytest.approx(sum(expected) / len(expected), rel=1e-12)
    assert 10 < result.value < 90
    for t in ("number", "yes/no", "other"):
        rows = [e for e, ty in zip(expected, data["type"], strict=True) if ty == t]
        assert result.details[f"answer_type/{t}"] == pytest.approx(sum(rows) / len(rows), rel=1e-12)
    single = compute_local(metric, [data])
    assert result.value == single.value  # exact sums: same bits for any blocking
