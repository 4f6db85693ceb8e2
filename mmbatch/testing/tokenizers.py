"""Real tokenizer files made without the Hugging Face hub.

The vocabularies and BPE merges are learned by the ``tokenizers`` library's own trainers
(``BpeTrainer``, ``WordPieceTrainer``) over a small fixed English corpus (:func:`corpus`). Training
normalises and pre-tokenises the text with the very normalizer and pre-tokenizer of the
``transformers`` class that is then built from the learned vocabulary (``CLIPTokenizer``,
``BertTokenizer``, ``GPT2Tokenizer``); that class supplies the decoder and post-processor, so
the results are ordinary hub-style tokenizers that ``AutoTokenizer.from_pretrained(dir)`` /
``AutoProcessor.from_pretrained(dir)`` load offline. (transformers 5 rebuilds these classes from
``vocab`` + ``merges`` on every load, so nothing but the learned model needs to be carried over.)

Same call, same bytes: the trainers number the symbols they first meet in hash-map order, which
decides ties between equally frequent pairs. Every base symbol (specials, the 256 byte
characters, CLIP's ``</w>`` word ends, WordPiece's ``##`` continuations) is therefore handed to
the trainer up front as one of its ``special_tokens``, which gives it a fixed id, and the learned
merges and ids are reproducible across processes.

Vocabulary sizes (with the default arguments):

* :func:`clip_tokenizer`  -- byte-level BPE with ``</w>`` word ends: 256 bytes, 256 ``byte</w>``,
  the learned tokens, then ``<|startoftext|>`` and ``<|endoftext|>`` (about 790);
* :func:`bert_tokenizer`  -- lower-cased WordPiece: ``[PAD] [UNK] [CLS] [SEP] [MASK]``, letters,
  digits, punctuation and their ``##`` continuations, then everything the trainer learns when
  run until every corpus word is a single token (about 770);
* :func:`opt_tokenizer`   -- GPT-2/OPT style byte-level BPE (``Ġ`` marks a leading space):
  ``<s> <pad> </s> <unk>``, 256 bytes, the learned tokens (about 560).
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from tokenizers import Tokenizer, models, pre_tokenizers, trainers

__all__ = [
    "WORDS",
    "CAPTIONS",
    "corpus",
    "bpe_vocab_and_merges",
    "clip_tokenizer",
    "bert_tokenizer",
    "blip_tokenizer",
    "opt_tokenizer",
]

# --------------------------------------------------------------------------- corpus

COLORS = (
    "red",
    "green",
    "blue",
    "yellow",
    "black",
    "white",
    "orange",
    "purple",
    "pink",
    "brown",
    "gray",
)
SHAPES = ("square", "circle", "triangle", "rectangle", "line", "dot", "star", "cross", "stripe")
ANIMALS = (
    "cat",
    "dog",
    "bird",
    "horse",
    "cow",
    "sheep",
    "fish",
    "bear",
    "mouse",
    "duck",
    "rabbit",
    "lion",
)

WORDS: tuple[str, ...] = tuple(
    dict.fromkeys(
        """
        a an the this that these those some many one two three four five six seven eight nine ten
        of on in at to with and or but for from by under over near next behind above below between
        is are was were be been being has have had do does did can will would could should may
        it its they them their there here he she his her we our you your i my me
        photo picture image drawing painting photograph sketch view close up shot scene background
        cat cats dog dogs bird birds horse horses cow cows sheep fish bear bears mouse duck ducks
        rabbit lion tiger zebra giraffe elephant monkey animal animals pet kitten puppy
        man woman person people boy girl child children baby player group crowd family friend
        red green blue yellow black white orange purple pink brown gray grey dark light bright colorful
        square squares circle circles triangle triangles rectangle line lines dot dots star cross stripe
        stripes shape shapes pattern round small large big little tiny huge tall short long wide
        car cars bus truck train plane boat bike bicycle motorcycle road street city building house
        room kitchen table chair bed couch sofa window door wall floor grass tree trees field park
        sky cloud clouds sun water sea beach river lake snow mountain hill sand rock flower flowers
        food pizza cake sandwich plate bowl cup glass bottle phone computer laptop book clock sign
        ball frisbee kite umbrella bag hat shirt toy toys box
        sitting standing walking running lying laying playing eating holding looking flying riding
        sleeping swimming jumping parked covered filled made using wearing carrying watching
        top side front back middle center left right corner edge inside outside together alone
        very not no yes what where which who how why when color number answer question caption
        good nice old new empty full open closed hot cold wet dry clean simple plain
        """.split()
    )
)

CAPTIONS: tuple[str, ...] = tuple(
    [f"a photo of a {a}" for a in ANIMALS]
    + [f"a photo of a {c} {s}" for c in COLORS for s in SHAPES[:4]]
    + [
        f"a {c} {s} on a {b} background"
        for c, s, b in zip(COLORS, SHAPES * 2, reversed(COLORS), strict=False)
    ]
    + [f"a picture of two {a}s" for a in ANIMALS[:6]]
    + [
        "a cat sitting on a couch",
        "a dog running in the grass",
        "a bird flying over the water",
        "a man riding a horse on the beach",
        "a woman holding an umbrella in the rain",
        "two cats sleeping on a bed",
        "a red car parked on the street",
        "a plate of food on a table",
        "what color is the square?",
        "how many circles are there?",
        "is there a cat in the picture?",
        "what is in the image?",
        "yes",
        "no",
        "0 1 2 3 4 5 6 7 8 9 10",
        "it's a cat, isn't it? I'm sure they're dogs; we'll see.",
    ]
)


def corpus() -> list[str]:
    """The fixed training text: every word on its own and every caption, in a fixed order."""
    return list(WORDS) + list(CAPTIONS)


# --------------------------------------------------------------------------- training

# GPT-2's byte-level alphabet: one printable stand-in per byte. Sorted by code point this is
# also GPT-2's (and OpenAI CLIP's) id order, '!' first.
_BYTES: tuple[str, ...] = tuple(sorted(pre_tokenizers.ByteLevel.alphabet()))

BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_CHARS = string.ascii_lowercase + string.digits


def _train(runtime: Any, model: Any, trainer: Any, texts: Iterable[str]) -> dict[str, Any]:
    """Train the empty ``tokenizers`` ``model`` with ``trainer`` on ``texts``, normalised and
    pre-tokenised exactly as the ``transformers`` tokenizer ``runtime`` will split text at encode
    time. Returns the trained model's JSON form (``vocab``, and ``merges`` for BPE)."""
    tok = Tokenizer(model)
    tok.normalizer = runtime.backend_tokenizer.normalizer
    tok.pre_tokenizer = runtime.backend_tokenizer.pre_tokenizer
    tok.train_from_iterator(texts, trainer=trainer)
    return json.loads(tok.to_str())["model"]


def _ordered(vocab: dict[str, int], extra: Iterable[str] = ()) -> dict[str, int]:
    """``vocab`` in id order, with the ``extra`` tokens appended as the next ids."""
    out = dict(sorted(vocab.items(), key=lambda kv: kv[1]))
    if list(out.values()) != list(range(len(out))):
        raise RuntimeError("the trainer returned non-contiguous ids")
    for token in extra:
        out.setdefault(token, len(out))
    return out


def bpe_vocab_and_merges(
    style: Literal["clip", "gpt2", "opt"] = "clip", num_merges: int = 300
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Vocabulary (token -> id) and ranked merges of a byte-level BPE that ``BpeTrainer`` learns
    on :func:`corpus` (at most ``num_merges`` new tokens, each pair seen at least twice).

    ``clip``: 256 bytes + 256 ``byte</w>`` word ends + learned tokens, then ``<|startoftext|>`` and
    ``<|endoftext|>`` as the two highest ids (as in OpenAI CLIP). ``opt``: ``<s> <pad> </s> <unk>``
    at ids 0-3 (as in OPT), then bytes and learned tokens. ``gpt2``: bytes, learned tokens,
    ``<|endoftext|>`` last.
    """
    from transformers import CLIPTokenizer, GPT2Tokenizer

    texts = corpus()
    runtime: Any
    word_end: dict[str, Any]
    if style == "clip":
        runtime, word_end = CLIPTokenizer(), {"end_of_word_suffix": "</w>"}
        base = [*_BYTES, *(b + "</w>" for b in _BYTES)]
        last = ["<|startoftext|>", "<|endoftext|>"]
    elif style in ("gpt2", "opt"):
        runtime, word_end = GPT2Tokenizer(), {}
        base = [*(("<s>", "<pad>", "</s>", "<unk>") if style == "opt" else ()), *_BYTES]
        last = [] if style == "opt" else ["<|endoftext|>"]
        texts += [" " + t for t in texts]  # the words also occur mid-sentence: "Ġcat"
    else:
        raise ValueError(f"unknown BPE style {style!r}; expected 'clip', 'gpt2' or 'opt'")
    trainer = trainers.BpeTrainer(
        vocab_size=len(base) + num_merges,
        min_frequency=2,
        special_tokens=base,  # fixed ids for the base symbols: see the module doc
        show_progress=False,
        **word_end,
    )
    model = _train(runtime, models.BPE(), trainer, texts)
    pairs = [m.split(" ") if isinstance(m, str) else list(m) for m in model["merges"]]
    return _ordered(model["vocab"], last), [(a, b) for a, b in pairs]


def _wordpiece_vocab(extra_tokens: Iterable[str] = ()) -> dict[str, int]:
    """A lower-cased WordPiece vocabulary from ``WordPieceTrainer``: ``[PAD]=0 [UNK]=1 [CLS]=2
    [SEP]=3 [MASK]=4``, letters, digits, punctuation and ``##`` continuations of every letter and
    digit (so any lower-case ASCII word is encodable), the learned pieces -- the trainer runs until
    every word of :func:`corpus` is a single token -- then ``extra_tokens`` last."""
    from transformers import BertTokenizer

    base = [*BERT_SPECIALS, *_CHARS, *string.punctuation, *("##" + c for c in _CHARS)]
    trainer = trainers.WordPieceTrainer(
        vocab_size=30_522,  # BERT's size, a cap never reached: merging stops when no pair is left
        min_frequency=1,
        special_tokens=base,  # fixed ids for the base symbols: see the module doc
        continuing_subword_prefix="##",
        show_progress=False,
    )
    model = _train(BertTokenizer(), models.WordPiece(unk_token="[UNK]"), trainer, corpus())
    return _ordered(model["vocab"], extra_tokens)


# --------------------------------------------------------------------------- transformers tokenizers


def _save(tok: Any, save_dir: str | Path | None) -> Any:
    if save_dir is not None:
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        tok.save_pretrained(str(save_dir))
    return tok


def clip_tokenizer(
    save_dir: str | Path | None = None, *, model_max_length: int = 77, num_merges: int = 300
) -> Any:
    """A ``CLIPTokenizer`` (the fast, tokenizers-backed class; ``CLIPTokenizerFast`` is the same
    class in transformers 5). ``<|startoftext|>``/``<|endoftext|>`` are the last two ids and
    ``<|endoftext|>`` also pads, exactly as in OpenAI CLIP. Saved to ``save_dir`` if given."""
    from transformers import CLIPTokenizer

    vocab, merges = bpe_vocab_and_merges("clip", num_merges)
    tok = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)  # type: ignore[arg-type]  # transformers' stub says list[str]; it takes pairs
    return _save(tok, save_dir)


def bert_tokenizer(
    save_dir: str | Path | None = None,
    *,
    model_max_length: int = 512,
    extra_tokens: Iterable[str] = (),
    **kwargs: Any,
) -> Any:
    """A lower-cased ``BertTokenizer`` (fast; ``BertTokenizerFast`` is an alias in transformers 5)
    over a WordPiece vocabulary learned on :func:`corpus`, with ``extra_tokens`` as the highest
    ids. Extra keyword arguments go to the tokenizer (e.g. ``bos_token``)."""
    from transformers import BertTokenizer

    vocab = _wordpiece_vocab(extra_tokens)
    tok = BertTokenizer(
        vocab=vocab, do_lower_case=True, model_max_length=model_max_length, **kwargs
    )
    return _save(tok, save_dir)


def blip_tokenizer(save_dir: str | Path | None = None, *, model_max_length: int = 512) -> Any:
    """The BERT tokenizer as BLIP uses it: ``[DEC]`` is the BOS token (the decoder start id that
    ``BlipTextConfig.bos_token_id`` must name) and ``[ENC]`` an extra special token; they are the
    two highest ids, as 30522/30523 are in ``Salesforce/blip-*``."""
    return bert_tokenizer(
        save_dir,
        model_max_length=model_max_length,
        extra_tokens=("[DEC]", "[ENC]"),
        bos_token="[DEC]",
        extra_special_tokens=["[ENC]"],
    )


def opt_tokenizer(
    save_dir: str | Path | None = None,
    *,
    image_token: str | None = None,
    model_max_length: int = 512,
    num_merges: int = 300,
) -> Any:
    """An OPT-style ``GPT2Tokenizer``: ``<s>=0 <pad>=1 </s>=2 <unk>=3``, ``</s>`` is both BOS and EOS
    and is prepended to every text (``add_bos_token=True``), as in ``facebook/opt-*``. With
    ``image_token`` (e.g. ``"<image>"``, for BLIP-2) that token is added as a special token with the
    last id, the way ``Blip2Processor`` itself adds it. (It is deliberately *not* registered as the
    ``tokenizer.image_token`` attribute: transformers 5.23's ``Blip2Processor`` then takes that
    plain string and fails on ``.content``.)"""
    from transformers import AddedToken, GPT2Tokenizer

    vocab, merges = bpe_vocab_and_merges("opt", num_merges)
    tok = GPT2Tokenizer(
        vocab=vocab,
        merges=merges,  # type: ignore[arg-type]  # pairs, as the fast tokenizer takes them
        unk_token="<unk>",
        bos_token="</s>",
        eos_token="</s>",
        pad_token="<pad>",
        add_bos_token=True,
        model_max_length=model_max_length,
    )
    if image_token is not None:
        tok.add_tokens(
            [AddedToken(image_token, normalized=False, special=True)], special_tokens=True
        )
    return _save(tok, save_dir)
