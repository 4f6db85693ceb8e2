"""Real tokenizer files made without the Hugging Face hub.

Every function here is deterministic: the vocabularies and BPE merges are learned by a
small pure-Python trainer over a fixed embedded English corpus, with explicit tie-breaks,
so the same call always writes byte-identical ``tokenizer.json`` files. The resulting
objects are the ordinary ``transformers`` tokenizer classes (``CLIPTokenizer``,
``BertTokenizer``, ``GPT2Tokenizer``), so ``AutoTokenizer.from_pretrained(dir)`` /
``AutoProcessor.from_pretrained(dir)`` load them offline like any hub checkpoint.

Vocabulary sizes (with the default arguments):

* :func:`clip_tokenizer`  -- byte-level BPE with ``</w>`` word ends, 512 base symbols +
  merges + 2 specials (about 800);
* :func:`bert_tokenizer`  -- lower-cased WordPiece: specials, single characters,
  ``##`` continuations and the corpus words (about 400);
* :func:`opt_tokenizer`   -- GPT-2/OPT style byte-level BPE (``Ġ`` marks a leading
  space), 4 specials + 256 bytes + merges (about 550).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Literal

__all__ = [
    "WORDS",
    "CAPTIONS",
    "corpus",
    "bytes_to_unicode",
    "train_bpe",
    "bpe_vocab_and_merges",
    "bpe_tokenizer_files",
    "wordpiece_vocab",
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


# --------------------------------------------------------------------------- byte-level BPE


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable unicode character map (the ByteLevel alphabet)."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def _byte_level(text: str) -> str:
    table = bytes_to_unicode()
    return "".join(table[b] for b in text.encode("utf-8"))


# Pre-tokenisation used only for *training* (the runtime pre-tokenizer is the one in each
# transformers tokenizer class; any merges are valid there because every byte is in the vocab).
_CLIP_SPLIT = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|[^\s\w]+", re.UNICODE)
_GPT2_SPLIT = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?[^\s\w]+", re.UNICODE)


def _word_counts(style: Literal["clip", "gpt2"], texts: Iterable[str]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for text in texts:
        if style == "clip":
            text = re.sub(r"\s+", " ", text.lower())
            pieces = _CLIP_SPLIT.findall(text)
        else:
            pieces = _GPT2_SPLIT.findall(text)
            # the same words also occur mid-sentence, i.e. with a leading space
            pieces += [" " + p for p in pieces if not p.startswith(" ")]
        counts.update(_byte_level(p) for p in pieces)
    return counts


def train_bpe(
    word_counts: dict[str, int],
    num_merges: int,
    end_of_word_suffix: str = "",
    min_frequency: int = 2,
) -> list[tuple[str, str]]:
    """Learn up to ``num_merges`` BPE merges, deterministically.

    ``word_counts`` maps an already byte-level-mapped word to its count. The most frequent
    adjacent pair is merged first; ties are broken by the pair's lexicographic order, so
    the result never depends on hash seeds or dict ordering.
    """
    words: list[tuple[list[str], int]] = []
    for word, count in sorted(word_counts.items()):
        symbols = list(word)
        if not symbols:
            continue
        if end_of_word_suffix:
            symbols[-1] = symbols[-1] + end_of_word_suffix
        words.append((symbols, count))

    merges: list[tuple[str, str]] = []
    for _ in range(num_merges):
        pairs: Counter[tuple[str, str]] = Counter()
        for symbols, count in words:
            for pair in zip(symbols, symbols[1:], strict=False):
                pairs[pair] += count
        if not pairs:
            break
        best, best_count = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        if best_count < min_frequency:
            break
        merges.append(best)
        left, right = best
        joined = left + right
        for symbols, _count in words:
            i = 0
            while i < len(symbols) - 1:
                if symbols[i] == left and symbols[i + 1] == right:
                    symbols[i : i + 2] = [joined]
                i += 1
    return merges


@lru_cache(maxsize=8)
def _bpe(
    style: str, num_merges: int
) -> tuple[tuple[tuple[str, int], ...], tuple[tuple[str, str], ...]]:
    alphabet = list(bytes_to_unicode().values())
    if style == "clip":
        merges = train_bpe(_word_counts("clip", corpus()), num_merges, end_of_word_suffix="</w>")
        tokens = alphabet + [c + "</w>" for c in alphabet]
        specials_front: list[str] = []
        specials_back = ["<|startoftext|>", "<|endoftext|>"]
    elif style in ("gpt2", "opt"):
        merges = train_bpe(_word_counts("gpt2", corpus()), num_merges)
        tokens = list(alphabet)
        specials_front = ["<s>", "<pad>", "</s>", "<unk>"] if style == "opt" else []
        specials_back = [] if style == "opt" else ["<|endoftext|>"]
    else:
        raise ValueError(f"unknown BPE style {style!r}; expected 'clip', 'gpt2' or 'opt'")
    ordered = list(
        dict.fromkeys(specials_front + tokens + [a + b for a, b in merges] + specials_back)
    )
    vocab = tuple((tok, i) for i, tok in enumerate(ordered))
    return vocab, tuple(merges)


def bpe_vocab_and_merges(
    style: Literal["clip", "gpt2", "opt"] = "clip", num_merges: int = 300
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Vocabulary (token -> id) and ranked merges of a byte-level BPE learned on :func:`corpus`.

    ``clip``: 256 bytes + 256 ``byte</w>`` word ends + merges, then ``<|startoftext|>`` and
    ``<|endoftext|>`` as the two highest ids (as in OpenAI CLIP). ``opt``: ``<s> <pad> </s> <unk>``
    at ids 0-3 (as in OPT), then bytes and merges. ``gpt2``: bytes, merges, ``<|endoftext|>`` last.
    """
    vocab, merges = _bpe(style, num_merges)
    return dict(vocab), list(merges)


def bpe_tokenizer_files(
    save_dir: str | Path, style: Literal["clip", "gpt2", "opt"] = "clip", num_merges: int = 300
) -> tuple[Path, Path]:
    """Write ``vocab.json`` and ``merges.txt`` (the classic slow-tokenizer files) into ``save_dir``."""
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    vocab, merges = bpe_vocab_and_merges(style, num_merges)
    vocab_path = save_dir / "vocab.json"
    merges_path = save_dir / "merges.txt"
    vocab_path.write_text(
        json.dumps(vocab, ensure_ascii=False, indent=0, sort_keys=False) + "\n", encoding="utf-8"
    )
    merges_path.write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8"
    )
    return vocab_path, merges_path


# --------------------------------------------------------------------------- WordPiece

BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"
_PUNCT = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"


@lru_cache(maxsize=4)
def _wordpiece(extra: tuple[str, ...]) -> tuple[str, ...]:
    words = []
    for text in corpus():
        words.extend(re.findall(r"[a-z0-9]+", text.lower()))
    tokens = (
        list(BERT_SPECIALS)
        + list(_CHARS)
        + list(_PUNCT)
        + ["##" + c for c in _CHARS]
        + list(dict.fromkeys(words))
        + ["##s", "##es", "##ed", "##ing", "##er", "##ly"]
        + list(extra)
    )
    return tuple(dict.fromkeys(tokens))


def wordpiece_vocab(extra_tokens: Iterable[str] = ()) -> dict[str, int]:
    """A lower-cased WordPiece vocabulary: ``[PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4``, the
    single characters and punctuation, ``##`` continuations of every letter/digit (so any
    lower-case ASCII word is encodable), the corpus words, then ``extra_tokens`` last."""
    return {tok: i for i, tok in enumerate(_wordpiece(tuple(extra_tokens)))}


# --------------------------------------------------------------------------- transformers tokenizers


def _save(tok, save_dir: str | Path | None):
    if save_dir is not None:
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        tok.save_pretrained(str(save_dir))
    return tok


def clip_tokenizer(
    save_dir: str | Path | None = None, *, model_max_length: int = 77, num_merges: int = 300
):
    """A ``CLIPTokenizer`` (the fast, tokenizers-backed class; ``CLIPTokenizerFast`` is the same
    class in transformers 5). ``<|startoftext|>``/``<|endoftext|>`` are the last two ids and
    ``<|endoftext|>`` also pads, exactly as in OpenAI CLIP. Saved to ``save_dir`` if given."""
    from transformers import CLIPTokenizer

    vocab, merges = bpe_vocab_and_merges("clip", num_merges)
    tok = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)
    return _save(tok, save_dir)


def bert_tokenizer(
    save_dir: str | Path | None = None,
    *,
    model_max_length: int = 512,
    extra_tokens: Iterable[str] = (),
    **kwargs,
):
    """A lower-cased ``BertTokenizer`` (fast; ``BertTokenizerFast`` is an alias in transformers 5)
    over :func:`wordpiece_vocab`. Extra keyword arguments go to the tokenizer (e.g. ``bos_token``)."""
    from transformers import BertTokenizer

    vocab = wordpiece_vocab(extra_tokens)
    tok = BertTokenizer(
        vocab=vocab, do_lower_case=True, model_max_length=model_max_length, **kwargs
    )
    return _save(tok, save_dir)


def blip_tokenizer(save_dir: str | Path | None = None, *, model_max_length: int = 512):
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
):
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
        merges=merges,
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
