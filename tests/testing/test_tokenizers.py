"""The test tokenizers of ``mmbatch.testing.tokenizers`` are learned by the ``tokenizers`` library's
own trainers, round-trip the corpus they were trained on, and are the same in every process."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from mmbatch.testing import tokenizers as T  # noqa: E402

MAKERS = {
    "clip": "T.clip_tokenizer(d)",
    "bert": "T.bert_tokenizer(d)",
    "blip": "T.blip_tokenizer(d)",
    "opt": "T.opt_tokenizer(d, image_token='<image>')",
}


def _make(name: str, d: Path | None = None):
    return eval(MAKERS[name], {"T": T, "d": d})


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


class _SpyTrainers:
    """Stands in for ``tokenizers.trainers`` and records which trainers are made, with what."""

    def __init__(self) -> None:
        self.made: list[tuple[str, dict]] = []

    def __getattr__(self, name: str):
        real = getattr(tokenizers.trainers, name)

        def make(**kwargs):
            self.made.append((name, kwargs))
            return real(**kwargs)

        return make


def test_the_library_trainers_learn_the_vocabularies(monkeypatch):
    assert not hasattr(T, "train_bpe")  # no hand-written trainer left
    spy = _SpyTrainers()
    monkeypatch.setattr(T, "trainers", spy)

    clip_vocab, clip_merges = T.bpe_vocab_and_merges("clip")
    opt_vocab, opt_merges = T.bpe_vocab_and_merges("opt")
    bert = T.bert_tokenizer()
    assert [name for name, _ in spy.made] == ["BpeTrainer", "BpeTrainer", "WordPieceTrainer"]
    assert spy.made[0][1]["end_of_word_suffix"] == "</w>"
    assert "end_of_word_suffix" not in spy.made[1][1]
    assert spy.made[2][1]["continuing_subword_prefix"] == "##"

    # BPE: ranked merges whose results follow the base symbols in the vocabulary
    for vocab, merges, n_base in ((clip_vocab, clip_merges, 512), (opt_vocab, opt_merges, 260)):
        assert 200 <= len(merges) <= 300
        assert all(vocab[a + b] >= n_base for a, b in merges)
    assert T.opt_tokenizer().get_vocab() == opt_vocab
    # byte ids in GPT-2's order ('!' first, 'Ġ' = 220), specials where the real checkpoints have them
    gpt2_vocab, _ = T.bpe_vocab_and_merges("gpt2")
    assert (gpt2_vocab["!"], gpt2_vocab["Ġ"]) == (0, 220)
    assert gpt2_vocab["<|endoftext|>"] == len(gpt2_vocab) - 1
    assert (clip_vocab["!"], clip_vocab["!</w>"], clip_vocab["Ġ</w>"]) == (0, 256, 256 + 220)
    assert [t for t, i in opt_vocab.items() if i < 5] == ["<s>", "<pad>", "</s>", "<unk>", "!"]
    # WordPiece: the trainer ran until every corpus word is one token
    vocab = bert.get_vocab()
    assert [bert.convert_ids_to_tokens(i) for i in range(5)] == list(T.BERT_SPECIALS)
    assert all(w in vocab for w in T.WORDS)
    assert {"##s", "##ing"} <= vocab.keys()


@pytest.mark.parametrize("name", list(MAKERS))
def test_corpus_round_trips(name, tmp_path):
    built = _make(name, tmp_path)
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    assert type(tok) is type(built)
    vocab = tok.get_vocab()
    marker = {"clip": "</w>", "opt": "Ġ"}.get(name, "##")
    assert sum(marker in t for t in vocab) > 100  # </w> word ends / Ġ space marks / ## continuations
    for text in T.corpus():
        ids = tok(text)["input_ids"]
        plain = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.unk_token_id is None or tok.unk_token_id not in plain, text  # CLIP: unk is eos
        assert ids == built(text)["input_ids"], text
        decoded = tok.decode(ids, skip_special_tokens=True)
        if name == "opt" or re.fullmatch(r"[a-z]+( [a-z]+)*", text):
            assert decoded == text  # byte-level OPT is lossless; plain lower-case words are for all
        else:  # CLIP/BERT lower-case and (CLIP) space out punctuation and digits
            assert decoded.replace(" ", "") == text.lower().replace(" ", ""), (text, decoded)
        if name in ("bert", "blip") and text in T.WORDS:
            assert tok.convert_ids_to_tokens(ids) == ["[CLS]", text, "[SEP]"]


def test_same_files_in_every_process(tmp_path):
    """The trainers number symbols in hash-map order, which changes from process to process;
    the pinned base symbols make the learned tokenizers byte-identical anyway."""
    for name in MAKERS:
        _make(name, tmp_path / "here" / name)
    script = (
        "import sys\nfrom pathlib import Path\nfrom mmbatch.testing import tokenizers as T\n"
        + "".join(f"d = Path(sys.argv[1]) / {n!r}\n{code}\n" for n, code in MAKERS.items())
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    for run in ("a", "b"):
        subprocess.run([sys.executable, "-c", script, str(tmp_path / run)], check=True, env=env)
    here = _digests(tmp_path / "here")
    assert len(here) == 2 * len(MAKERS)  # tokenizer.json + tokenizer_config.json each
    assert _digests(tmp_path / "a") == here
    assert _digests(tmp_path / "b") == here
