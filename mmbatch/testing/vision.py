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

from pathlib import Path
from typing import Sequence

from mmbatch.testing import tokenizers as _tok

__all__ = [
    "build_tiny_clip",
    "build_tiny_vit_classifier",
    "build_tiny_blip_captioner",
    "build_tiny_blip_vqa",
    "build_tiny_blip2",
    "BUILDERS",
]

# CLIP / BLIP normalisation constants (as in the OpenAI / Salesforce checkpoints).
_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def _save(model, processor, out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    # transformers 5 always writes safetensors (``safe_serialization`` was removed).
    model.save_pretrained(str(out))
    processor.save_pretrained(str(out))
    return out


def _seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


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
    projection_dim: int = 32,
    num_layers: int = 2,
) -> Path:
    """``CLIPModel`` + ``CLIPProcessor`` (``CLIPImageProcessor`` resizing the shortest edge to
    ``image_size`` and centre-cropping to ``image_size``², + byte-level BPE ``CLIPTokenizer``).

    In transformers 5 ``get_image_features`` / ``get_text_features`` return a
    ``BaseModelOutputWithPooling`` whose ``.pooler_output`` is the projected
    ``(batch, projection_dim)`` embedding (4.x returned the tensor itself).
    """
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTextConfig, CLIPVisionConfig

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
    _seed(seed)
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
    _seed(seed)
    model = ViTForImageClassification(config)
    return _save(model, processor, out_dir)


# --------------------------------------------------------------------------- BLIP


def _blip_parts(image_size: int, patch_size: int, hidden_size: int, num_layers: int):
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


def _discourage_special_tokens(lm_bias, tokenizer) -> None:
    """Push the output bias of non-text special tokens down so greedy captions/answers are words.

    [SEP] (the stop token) is only lowered a little, so generation can still end early."""
    import torch

    with torch.no_grad():
        for tok in ("[PAD]", "[UNK]", "[CLS]", "[MASK]", "[DEC]", "[ENC]"):
            lm_bias[tokenizer.convert_tokens_to_ids(tok)] = -10.0
        lm_bias[tokenizer.sep_token_id] = -1.0


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
    _seed(seed)
    model = BlipForConditionalGeneration(config)
    _discourage_special_tokens(model.text_decoder.cls.predictions.bias, tokenizer)
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
    _seed(seed)
    model = BlipForQuestionAnswering(config)
    _discourage_special_tokens(model.text_decoder.cls.predictions.bias, tokenizer)
    return _save(model, processor, out_dir)


# --------------------------------------------------------------------------- BLIP-2


def _favour_words(lm_head_weight, tokenizer, other_scale: float = 0.05) -> None:
    """Shrink the output-embedding rows of every token that is not a whole space-prefixed word
    (``Ġcat``), so that a random model's greedy output reads as words, not stray bytes."""
    import torch

    vocab = tokenizer.get_vocab()
    keep = sorted(i for t, i in vocab.items() if t.startswith("Ġ") and len(t) > 2 and t[1:].isalpha())
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
        BlipImageProcessor,
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2Processor,
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
    processor = Blip2Processor(image_processor=image_processor, tokenizer=tokenizer, num_query_tokens=num_query_tokens)
    _seed(seed)
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
