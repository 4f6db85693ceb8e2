"""VQA accuracy as the official evaluation script (GT-Vision-Lab ``vqaEval.py``) computes it.

For a question with human answers ``a_1 .. a_n`` (usually 10) and a predicted answer ``p``:
``acc = mean over i of min(1, #{j != i : a_j == p} / 3)`` -- the average over the n
leave-one-out subsets of "at least 3 humans gave this answer". The corpus value is the mean
over questions, in percent like the official ``overall`` (not rounded to 2 decimals here).

Normalisation, as in the official script, quirks included:

- the prediction: newlines and tabs become spaces, it is stripped, then punctuation is
  processed and digits/articles/contractions normalised (:func:`normalize_answer`);
- the human answers: only when they are not all identical, punctuation is processed
  (:func:`process_punctuation`); nothing else. The official annotations are already
  normalised; ``normalize_references: true`` applies the full prediction normalisation to the
  human answers as well (not the official behaviour; for raw answer sets).

Rows are independent, so blocks just add (exact) sums. ``answer_type`` (a column such as
VQA's ``yes/no`` / ``number`` / ``other``) adds per-type accuracies to ``details``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from mmbatch.core.metric import Metric, MetricConfig, MetricResult, register_metric

from ._common import ScoreSum, column, ids_of, reference_lists, strings

# The official script's tables. Its contraction keys with capitals ("Im", "Ive", "Id've",
# "I'dve") can never match (the text is lower-cased first); kept for fidelity, as is
# "somebody'd" -> "somebodyd".
_CONTRACTIONS = dict(pair.split("=") for pair in """
aint=ain't arent=aren't cant=can't couldve=could've couldnt=couldn't couldn'tve=couldn't've
couldnt've=couldn't've didnt=didn't doesnt=doesn't dont=don't hadnt=hadn't hadnt've=hadn't've
hadn'tve=hadn't've hasnt=hasn't havent=haven't hed=he'd hed've=he'd've he'dve=he'd've hes=he's
howd=how'd howll=how'll hows=how's Id've=I'd've I'dve=I'd've Im=I'm Ive=I've isnt=isn't itd=it'd
itd've=it'd've it'dve=it'd've itll=it'll let's=let's maam=ma'am mightnt=mightn't
mightnt've=mightn't've mightn'tve=mightn't've mightve=might've mustnt=mustn't mustve=must've
neednt=needn't notve=not've oclock=o'clock oughtnt=oughtn't ow's'at='ow's'at 'ows'at='ow's'at
'ow'sat='ow's'at shant=shan't shed've=she'd've she'dve=she'd've she's=she's shouldve=should've
shouldnt=shouldn't shouldnt've=shouldn't've shouldn'tve=shouldn't've somebody'd=somebodyd
somebodyd've=somebody'd've somebody'dve=somebody'd've somebodyll=somebody'll somebodys=somebody's
someoned=someone'd someoned've=someone'd've someone'dve=someone'd've someonell=someone'll
someones=someone's somethingd=something'd somethingd've=something'd've
something'dve=something'd've somethingll=something'll thats=that's thered=there'd
thered've=there'd've there'dve=there'd've therere=there're theres=there's theyd=they'd
theyd've=they'd've they'dve=they'd've theyll=they'll theyre=they're theyve=they've twas='twas
wasnt=wasn't wed've=we'd've we'dve=we'd've weve=we've werent=weren't whatll=what'll
whatre=what're whats=what's whatve=what've whens=when's whered=where'd wheres=where's
whereve=where've whod=who'd whod've=who'd've who'dve=who'd've wholl=who'll whos=who's
whove=who've whyll=why'll whyre=why're whys=why's wont=won't wouldve=would've wouldnt=wouldn't
wouldnt've=wouldn't've wouldn'tve=wouldn't've yall=y'all yall'll=y'all'll y'allll=y'all'll
yall'd've=y'all'd've y'alld've=y'all'd've y'all'dve=y'all'd've youd=you'd youd've=you'd've
you'dve=you'd've youll=you'll youre=you're youve=you've
""".split())
_NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
_ARTICLES = frozenset({"a", "an", "the"})
_PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-",
                ">", "<", "@", "`", ",", "?", "!")
# The official look-behind is mistyped as a look-ahead ("(?!<=\d)"), so a digit before the
# period does not protect it; only a digit after it does ("3.5" keeps its period, "3." not).
_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")
_DIGIT_COMMA_DIGIT = re.compile(r"(\d)(\,)(\d)")
# The official script passes re.UNICODE (32) where re.sub expects the count.
_MAX_PERIODS = 32


def process_punctuation(text: str) -> str:
    """The official ``processPunctuation``: a mark is deleted where it touches a space (or
    anywhere, when the text has a digit-comma-digit), otherwise replaced by a space; then the
    first 32 periods not followed by a digit are deleted."""
    delete_everywhere = _DIGIT_COMMA_DIGIT.search(text) is not None
    out = text
    for mark in _PUNCTUATION:
        if delete_everywhere or mark + " " in text or " " + mark in text:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD.sub("", out, count=_MAX_PERIODS)


def process_digits_articles(text: str) -> str:
    """The official ``processDigitArticle``: lower-case, number words zero..ten (and "none")
    to digits, drop a/an/the, restore apostrophes of known contractions."""
    words = [_NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    return " ".join(_CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES)


def normalize_answer(answer: str) -> str:
    """How the official script normalises a predicted answer."""
    answer = answer.replace("\n", " ").replace("\t", " ").strip()
    return process_digits_articles(process_punctuation(answer))


def vqa_accuracy(prediction: str, answers: list[str], normalize_references: bool = False) -> float:
    """One question's accuracy in [0, 1], as the official script computes it."""
    pred = normalize_answer(prediction)
    if normalize_references:
        answers = [normalize_answer(a) for a in answers]
    elif len(set(answers)) > 1:
        answers = [process_punctuation(a) for a in answers]
    accs = []
    for i in range(len(answers)):
        matches = sum(1 for j, a in enumerate(answers) if j != i and a == pred)
        accs.append(min(1, float(matches) / 3))
    return float(sum(accs)) / len(accs)


class VqaConfig(MetricConfig):
    prediction: str
    """String column with the predicted answer."""
    references: str
    """``list<string>`` column with the human answers (usually 10)."""
    answer_type: str | None = None
    """Optional string column (``yes/no``, ``number``, ``other``): per-type accuracies."""
    normalize_references: bool = False
    per_row: bool = False
    """Also write each row's score: ``<output>/metrics/<name>-rows.parquet`` (``id``, ``<name>``)."""


@dataclass
class VqaState:
    overall: ScoreSum = field(default_factory=ScoreSum)
    by_type: dict[str, ScoreSum] = field(default_factory=dict)


@register_metric("vqa_accuracy")
class VqaAccuracy(Metric[VqaConfig]):
    """VQA accuracy (official vqaEval.py), in percent."""

    row_local = True


    def input_columns(self) -> list[str]:
        cols = [self.config.prediction, self.config.references]
        return cols + ([self.config.answer_type] if self.config.answer_type else [])

    def partial(self, batch: dict[str, list], pass_index: int, broadcast: Any) -> VqaState:
        preds = strings(batch, self.config.prediction)
        refs = reference_lists(batch, self.config.references)
        ids = ids_of(batch)
        scores = [
            100.0 * vqa_accuracy(p, rs, self.config.normalize_references)
            for p, rs in zip(preds, refs, strict=True)
        ]
        state = VqaState(ScoreSum.of(ids, scores, self.config.per_row))
        if self.config.answer_type:
            types = column(batch, self.config.answer_type)
            for t in sorted(set(map(str, types))):
                chosen = [s for s, ty in zip(scores, types, strict=True) if str(ty) == t]
                state.by_type[t] = ScoreSum.of([], chosen, keep_rows=False)
        return state

    def merge(self, states: list[VqaState]) -> VqaState:
        types = sorted({t for s in states for t in s.by_type})
        return VqaState(
            ScoreSum.merge([s.overall for s in states]),
            {t: ScoreSum.merge([s.by_type[t] for s in states if t in s.by_type]) for t in types},
        )

    def finalize(self, merged: VqaState, broadcast: Any) -> MetricResult:
        return MetricResult(
            name=self.output_name,
            value=merged.overall.mean(),
            count=merged.overall.count,
            details={f"answer_type/{t}": s.mean() for t, s in merged.by_type.items()},
            row_scores=merged.overall.row_scores(self.output_name),
        )
