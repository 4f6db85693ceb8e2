"""Tiny random-weight vision(-language) models of real architectures, saved like hub checkpoints.

Each ``build_tiny_*`` function seeds torch, builds the real ``transformers`` model class from a
tiny config (hidden size 32, 2 layers, 32x32 images), pairs it with the real processor class
(image processor + a tokenizer from :mod:`mmbatch.testing.tokenizers`), writes both with
``save_pretrained`` (``model.safetensors`` + ``config.json`` + processor / tokenizer files) and
returns the folder. The folder loads offline through the ordinary Auto classes:

=====================================  ==========================================================
builder                                loads with (transformers 5.x)
=====================================  ==========================================================
:func:`build_tiny_clip`                ``AutoModel`` / ``AutoModelForZeroShotImageClassification``
                                       (-> ``CLIPModel``), ``AutoProcessor`` (-> ``CLIPProcessor``)
:func:`build_tiny_vit_classifier`      ``AutoModelForImageClassification``, ``AutoImageProcessor``,
                                       ``pipeline("image-classification")``
:func:`build_tiny_blip_captioner`      ``AutoModelForImageTextToText`` (``AutoModelForVision2Seq``
                                       no longer exists in 5.x), ``AutoProcessor``
:func:`build_tiny_blip_vqa`            ``AutoModelForVisualQuestionAnswering``, ``AutoProcessor``
:func:`build_tiny_blip2`               ``AutoModelForImageTextToText`` (also
                                       ``AutoModelForVisualQuestionAnswering``), ``AutoProcessor``
=====================================  ==========================================================

Same call, same bytes: the weights depend only on ``seed`` (and the size arguments), the
tokenizers are trained deterministically. Models are a few hundred KB; a build takes well
under a second once ``transformers`` is imported.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mmbatch.testing import tokenizers as _tok

__all__ = [
    "build_tiny_clip",
    "build_tiny_vit_classifier",
    "build_tiny_blip_captioner",
    "build_tiny_blip_vqa",
    "build_tiny_blip2",
    "BUILDERS",
]

CROSS_ATTENTION_GAIN = 5.0

# CLIP / BLIP normalisation constants (as in the OpenAI / Salesforce checkpoints).
_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def _save(model: Any, processor: Any, out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    # transformers 5 always writes safetensors (``safe_serialization`` was removed).
    model.save_pretrained(str(out))
    processor.save_pretrained(str(out))
    return out


def _seed(seed: int) -> None:
    """Plain ``torch.manual_seed`` (kept for other builders; prefer :func:`_seeded`)."""
    import torch

    torch.manual_seed(seed)


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """``torch.manual_seed(seed)`` for the model's initialisation, without disturbing the caller's
    global RNG state (it is restored on exit)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _check_patch(image_size: int, patch_size: int) -> None:
    if image_size % patch_size:
        raise ValueError(f"image_size {image_size} must be a multiple of patch_size {patch_size}")


# --------------------------------------------------------------------------- CLIP


def build_tiny_clip(
    out_dir: str | Path,
    *,
    seed: int = 0,
    image_size: int = 32,
    patch_size: int = 8,
    hidden_size: int = 32,
    projection_dim: int = 24,
    num_layers: int = 2,
) -> Path:
    """``CLIPModel`` + ``CLIPProcessor`` (``CLIPImageProcessor`` resizing the shortest edge to
    ``image_size`` and centre-cropping to ``image_size``², + byte-level BPE ``CLIPTokenizer``).

    In transformers 5 ``get_image_features`` / ``get_text_features`` return a
    ``BaseModelOutputWithPooling`` whose ``.pooler_output`` is the projected
    ``(batch, projection_dim)`` embedding (4.x returned the tensor itself). ``projection_dim``
    (24) differs from ``hidden_size`` (32) on purpose, so code that reads the unprojected
    hidden state instead of the embedding fails on shape.
    """
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPProcessor,
        CLIPTextConfig,
        CLIPVisionConfig,
    )

    _check_patch(image_size, patch_size)
    tokenizer = _tok.clip_tokenizer(model_max_length=77)
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        projection_dim=projection_dim,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        max_position_embeddings=77,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    vision_config = CLIPVisionConfig(
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        projection_dim=projection_dim,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch_size,
    )
    config = CLIPConfig(
        text_config=text_config.to_dict(),
        vision_config=vision_config.to_dict(),
        projection_dim=projection_dim,
    )
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        do_center_crop=True,
        image_mean=_CLIP_MEAN,
        image_std=_CLIP_STD,
    )
    processor = CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)
    with _seeded(seed):
        model = CLIPModel(config)
    return _save(model, processor, out_dir)


# --------------------------------------------------------------------------- ViT


def build_tiny_vit_classifier(
    out_dir: str | Path,
    labels: Sequence[str] = ("cat", "dog", "bird"),
    *,
    seed: int = 0,
    image_size: int = 32,
    patch_size: int = 8,
    hidden_size: int = 32,
    num_layers: int = 2,
) -> Path:
    """``ViTForImageClassification`` with ``id2label``/``label2id`` from ``labels`` (in order)
    + ``ViTImageProcessor`` resizing to ``image_size``²."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    labels = [str(x) for x in labels]
    if not labels or len(set(labels)) != len(labels):
        raise ValueError(f"labels must be non-empty and unique, got {labels!r}")
    _check_patch(image_size, patch_size)
    config = ViTConfig(
        image_size=image_size,
        patch_size=patch_size,
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        id2label={i: name for i, name in enumerate(labels)},
        label2id={name: i for i, name in enumerate(labels)},
    )
    processor = ViTImageProcessor(
        size={"height": image_size, "width": image_size}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    with _seeded(seed):
        model = ViTForImageClassification(config)
    return _save(model, processor, out_dir)


# --------------------------------------------------------------------------- BLIP


def _blip_parts(image_size: int, patch_size: int, hidden_size: int, num_layers: int) -> tuple[Any, Any, Any]:
    from transformers import BlipConfig, BlipImageProcessor, BlipProcessor

    _check_patch(image_size, patch_size)
    tokenizer = _tok.blip_tokenizer()
    text_config = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        encoder_hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        projection_dim=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        max_position_embeddings=128,
        # BLIP's decoder starts from [DEC] (30522 in the real vocab) and stops at [SEP] (102);
        # ``eos_token_id`` is only the placeholder that ``generate`` appends then drops.
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.sep_token_id,
        pad_token_id=tokenizer.pad_token_id,
        sep_token_id=tokenizer.sep_token_id,
    )
    vision_config = dict(
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        projection_dim=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch_size,
        # the real default (1e-10) makes every image embed alike; 0.02 keeps images apart
        initializer_range=0.02,
    )
    config = BlipConfig(
        text_config=text_config,
        vision_config=vision_config,
        projection_dim=hidden_size,
        image_text_hidden_size=hidden_size,
    )
    image_processor = BlipImageProcessor(
        size={"height": image_size, "width": image_size}, image_mean=_CLIP_MEAN, image_std=_CLIP_STD
    )
    processor = BlipProcessor(image_processor=image_processor, tokenizer=tokenizer)
    return config, processor, tokenizer


def _favour_words_bias(lm_bias: Any, tokenizer: Any) -> None:
    """Set the LM output bias so a random BLIP decoder's greedy output reads as words: 0 for whole
    corpus words, -10 for everything else (word pieces, single characters, special tokens).

    The stop token [SEP] is in the "everything else" group too, so greedy generation runs to
    ``max_new_tokens`` / ``max_length`` and captions are never empty."""
    import torch

    words = set(_tok.WORDS)
    with torch.no_grad():
        lm_bias.fill_(-10.0)
        for token, i in tokenizer.get_vocab().items():
            if token in words and (len(token) > 1 or token == "a"):
                lm_bias[i] = 0.0


def _amplify_cross_attention(model: Any, factor: float) -> None:
    """Scale the value and output projections of every text-to-image cross-attention by ``factor``.

    At BERT's init scale (std 0.02, hidden 32) the image contributes only a few percent of the
    decoder's residual stream, so a random BLIP says the same thing about every image; amplified,
    different images get different captions / answers (still deterministic)."""
    import torch

    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".crossattention.self.value." in name or ".crossattention.output.dense." in name:
                param.mul_(factor)


def build_tiny_blip_captioner(
    out_dir: str | Path,
    *,
    seed: int = 0,
    image_size: int = 32,
    patch_size: int = 8,
    hidden_size: int = 32,
    num_layers: int = 2,
) -> Path:
    """``BlipForConditionalGeneration`` + ``BlipProcessor`` (``BlipImageProcessor`` +
    ``BertTokenizer`` whose ``[DEC]`` BOS / ``[SEP]`` stop ids match the text config).

    ``model.generate(**processor(images=..., return_tensors="pt"), max_new_tokens=n)`` is greedy
    and deterministic; ``processor.batch_decode(ids, skip_special_tokens=True)`` gives text."""
    from transformers import BlipForConditionalGeneration

    config, processor, tokenizer = _blip_parts(image_size, patch_size, hidden_size, num_layers)
    with _seeded(seed):
        model = BlipForConditionalGeneration(config)
        _amplify_cross_attention(model, CROSS_ATTENTION_GAIN)
        _favour_words_bias(model.text_decoder.cls.predictions.bias, tokenizer)
    return _save(model, processor, out_dir)


def build_tiny_blip_vqa(
    out_dir: str | Path,
    *,
    seed: int = 0,
    image_size: int = 32,
    patch_size: int = 8,
    hidden_size: int = 32,
    num_layers: int = 2,
) -> Path:
    """``BlipForQuestionAnswering`` + ``BlipProcessor``:
    ``model.generate(**processor(images=img, text=question, return_tensors="pt"))``."""
    from transformers import BlipForQuestionAnswering

    config, processor, tokenizer = _blip_parts(image_size, patch_size, hidden_size, num_layers)
    with _seeded(seed):
        model = BlipForQuestionAnswering(config)
        _amplify_cross_attention(model, CROSS_ATTENTION_GAIN)
        _favour_words_bias(model.text_decoder.cls.predictions.bias, tokenizer)
    return _save(model, processor, out_dir)


# --------------------------------------------------------------------------- BLIP-2


def _favour_words(lm_head_weight: Any, tokenizer: Any, other_scale: float = 0.05) -> None:
    """Shrink the output-embedding rows of every token that is not a whole space-prefixed corpus
    word (``Ġcat``), so that a random model's greedy output reads as words, not stray bytes."""
    import torch

    words = set(_tok.WORDS)
    keep = sorted(
        i for t, i in tokenizer.get_vocab().items() if t.startswith("Ġ") and t[1:] in words
    )
    scale = torch.full((lm_head_weight.shape[0], 1), other_scale, dtype=lm_head_weight.dtype)
    scale[keep] = 1.0
    with torch.no_grad():
        lm_head_weight.mul_(scale)


def build_tiny_blip2(
    out_dir: str | Path,
    *,
    seed: int = 0,
    image_size: int = 32,
    patch_size: int = 8,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_query_tokens: int = 4,
) -> Path:
    """``Blip2ForConditionalGeneration`` with a tiny OPT language model + ``Blip2Processor``
    (``BlipImageProcessor`` + OPT-style ``GPT2Tokenizer`` with ``<image>`` as its last id).

    ``processor.num_query_tokens`` equals ``config.num_query_tokens`` and
    ``config.image_token_index`` is the tokenizer's ``<image>`` id: the processor expands each
    prompt to ``<image>``×num_query_tokens + ``</s>`` + text, and the model scatters the Q-Former
    outputs into those positions. Without text the model builds the same prefix itself."""
    from transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2Processor,
        BlipImageProcessor,
        OPTConfig,
    )

    _check_patch(image_size, patch_size)
    tokenizer = _tok.opt_tokenizer(image_token="<image>")
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    vision_config = dict(
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch_size,
        initializer_range=0.02,
    )
    qformer_config = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        intermediate_size=hidden_size * 2,
        max_position_embeddings=128,
        cross_attention_frequency=1,
    )
    text_config = OPTConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        word_embed_proj_dim=hidden_size,
        num_hidden_layers=num_layers,
        ffn_dim=hidden_size * 2,
        num_attention_heads=2,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        # an untied random LM head; tied random embeddings make greedy decoding repeat its input
        tie_word_embeddings=False,
    ).to_dict()
    config = Blip2Config(
        vision_config=vision_config,
        qformer_config=qformer_config,
        text_config=text_config,
        num_query_tokens=num_query_tokens,
        image_token_index=image_token_id,
        image_text_hidden_size=hidden_size,
    )
    image_processor = BlipImageProcessor(
        size={"height": image_size, "width": image_size}, image_mean=_CLIP_MEAN, image_std=_CLIP_STD
    )
    processor = Blip2Processor(
        image_processor=image_processor, tokenizer=tokenizer, num_query_tokens=num_query_tokens
    )
    with _seeded(seed):
        model = Blip2ForConditionalGeneration(config)
        _favour_words(model.language_model.get_output_embeddings().weight, tokenizer)
    return _save(model, processor, out_dir)


BUILDERS = {
    "clip": build_tiny_clip,
    "vit": build_tiny_vit_classifier,
    "blip-caption": build_tiny_blip_captioner,
    "blip-vqa": build_tiny_blip_vqa,
    "blip2": build_tiny_blip2,
}
