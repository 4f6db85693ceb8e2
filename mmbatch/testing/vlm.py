"""Tiny random-weight chat-template vision-language models, saved like hub checkpoints.

=====================================  ==========================================================
builder                                what it is (loads with ``AutoModelForImageTextToText`` +
                                       ``AutoProcessor``, offline)
=====================================  ==========================================================
:func:`build_tiny_llava`               ``LlavaForConditionalGeneration`` (CLIP vision tower, Llama
                                       LM) + ``LlavaProcessor`` carrying the llava-1.5-hf chat
                                       template (``USER: <image>\\n... ASSISTANT:``)
:func:`build_tiny_llava_vllm`          the same LLaVA with head size 64 (vLLM's CPU attention
                                       takes 32, 64, 80, ...; hidden 128) and the weights named
                                       as on the hub (``vision_tower.vision_model.*``), which is
                                       what vLLM's loader maps
:func:`build_tiny_idefics2`            ``Idefics2ForConditionalGeneration`` (SigLIP-style vision,
                                       perceiver resampler, Mistral LM) + ``Idefics2Processor``
                                       with the idefics2-8b chat template: several images per
                                       prompt, interleaved with text
=====================================  ==========================================================

Both use the OPT-style byte-level BPE tokenizer of :mod:`mmbatch.testing.tokenizers`, an untied
LM head whose non-word rows are shrunk (so greedy answers read as words), 32x32 images and
hidden size 32 (text initializer range 0.2, so that answers depend on the question and image).
Same call, same bytes.

:func:`write_vqa_parquet` writes a VQAv2-shaped table (``id``, ``image``, ``question``,
``answers``) about the synthetic images of :mod:`mmbatch.testing.images`, optionally with bad rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmbatch.testing import tokenizers as _tok
from mmbatch.testing.vision import _CLIP_MEAN, _CLIP_STD, _favour_words, _save, _seed

__all__ = [
    "LLAVA_CHAT_TEMPLATE",
    "IDEFICS2_CHAT_TEMPLATE",
    "VQA_BAD_KINDS",
    "build_tiny_llava",
    "build_tiny_llava_vllm",
    "build_tiny_idefics2",
    "vqa_rows",
    "write_vqa_parquet",
]

# The template shipped with llava-hf/llava-1.5-7b-hf (images first, then the text of a turn).
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}"
    "{% endif %}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}{% endfor %}{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' '}}{% endfor %}{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

# The template shipped with HuggingFaceM4/idefics2-8b: content items rendered in order.
IDEFICS2_CHAT_TEMPLATE = (
    "{% for message in messages %}{{message['role'].capitalize()}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def _llama_like(tokenizer: Any, hidden_size: int, num_layers: int) -> dict[str, Any]:
    return dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        initializer_range=0.2,
    )


def build_tiny_llava(
    out_dir: str | Path,
    *,
    seed: int = 0,
    image_size: int = 32,
    patch_size: int = 8,
    hidden_size: int = 32,
    num_layers: int = 2,
) -> Path:
    """``LlavaForConditionalGeneration`` + ``LlavaProcessor`` (``CLIPImageProcessor``, OPT-style
    tokenizer with ``<image>``, the llava-1.5 chat template). Like llava-1.5: features from the
    second-to-last vision layer without CLS, so each ``<image>`` expands to (size/patch)² tokens."""
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tokenizer = _tok.opt_tokenizer(image_token="<image>")
    image_token_id = tokenizer.convert_tokens_to_ids("<image>")
    vision = CLIPVisionConfig(
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch_size,
    )
    text = LlamaConfig(**_llama_like(tokenizer, hidden_size, num_layers))
    config = LlavaConfig(
        vision_config=vision.to_dict(),
        text_config=text.to_dict(),
        image_token_index=image_token_id,
        image_seq_length=(image_size // patch_size) ** 2,
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=_CLIP_MEAN,
        image_std=_CLIP_STD,
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_CHAT_TEMPLATE,
    )
    _seed(seed)
    model = LlavaForConditionalGeneration(config)
    _favour_words(model.lm_head.weight, tokenizer)
    return _save(model, processor, out_dir)


def build_tiny_llava_vllm(out_dir: str | Path, *, seed: int = 0, hidden_size: int = 128, **arch: int) -> Path:
    """:func:`build_tiny_llava` at hidden size 128 (two heads of 64; ``arch`` as there), saved with the hub's
    weight names: transformers 5 writes the CLIP tower as ``vision_tower.*``, the llava-hf
    checkpoints (and vLLM's loader) have ``vision_tower.vision_model.*``; transformers loads both."""
    from safetensors.torch import load_file, save_file

    out = build_tiny_llava(out_dir, seed=seed, hidden_size=hidden_size, **arch)
    weights = out / "model.safetensors"
    tower, hub = "vision_tower.", "vision_tower.vision_model."
    state = {
        (hub + k[len(tower) :] if k.startswith(tower) and not k.startswith(hub) else k): v
        for k, v in load_file(str(weights)).items()
    }
    save_file(state, str(weights), metadata={"format": "pt"})
    return out


def build_tiny_idefics2(
    out_dir: str | Path,
    *,
    seed: int = 0,
    image_size: int = 32,
    patch_size: int = 8,
    hidden_size: int = 32,
    num_layers: int = 2,
    image_seq_len: int = 4,
) -> Path:
    """``Idefics2ForConditionalGeneration`` + ``Idefics2Processor`` (``Idefics2ImageProcessor``
    without image splitting, the idefics2 chat template). Each ``<image>`` in a prompt becomes
    ``<fake_token_around_image>`` + ``image_seq_len`` perceiver latents; a prompt may hold any
    number of images, interleaved with its text."""
    from transformers import (
        Idefics2Config,
        Idefics2ForConditionalGeneration,
        Idefics2ImageProcessor,
        Idefics2Processor,
    )

    tokenizer = _tok.opt_tokenizer()
    image_processor = Idefics2ImageProcessor(
        do_image_splitting=False,
        size={"shortest_edge": image_size, "longest_edge": image_size},
        image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
    )
    processor = Idefics2Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,  # the processor adds <fake_token_around_image>, <image>, <end_of_utterance>
        image_seq_len=image_seq_len,
        chat_template=IDEFICS2_CHAT_TEMPLATE,
    )
    vision = dict(
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch_size,
    )
    perceiver = dict(
        hidden_size=hidden_size,
        resampler_n_latents=image_seq_len,
        resampler_depth=1,
        resampler_n_heads=2,
        resampler_head_dim=16,
        num_key_value_heads=1,
    )
    config = Idefics2Config(
        vision_config=vision,
        perceiver_config=perceiver,
        text_config=dict(model_type="mistral", **_llama_like(tokenizer, hidden_size, num_layers)),
        image_token_id=processor.image_token_id,
        tie_word_embeddings=False,
    )
    _seed(seed)
    model = Idefics2ForConditionalGeneration(config)
    _favour_words(model.lm_head.weight, tokenizer)
    return _save(model, processor, out_dir)


# --------------------------------------------------------------------------- VQA data

#: bad rows of ``write_vqa_parquet(..., with_bad=True)``: row id ``"bad-<kind>"``
VQA_BAD_KINDS: tuple[str, ...] = ("missing-image", "empty-question", "corrupt-image")


def vqa_rows(i: int) -> tuple[str, list[str]]:
    """Question ``i`` about synthetic image ``i`` and its 10 human answers (VQA style)."""
    from mmbatch.testing.images import image_spec

    s = image_spec(i)
    if i % 3 == 0:
        return "What color is the shape?", [s["color"]] * 8 + [s["background"]] * 2
    if i % 3 == 1:
        return "What is the background color?", [s["background"]] * 10
    shape = "stripes" if s["shape"] == "stripes" else s["shape"]
    return "Which shape is in the picture?", [shape] * 9 + ["square" if shape != "square" else "box"]


def write_vqa_parquet(path: str | Path, n: int, size: tuple[int, int] = (48, 40), with_bad: bool = False) -> list[str]:
    """One Parquet file: ``id`` (``q-00000`` ...), ``image`` (JPEG bytes of synthetic image ``i``),
    ``question``, ``answers`` (list<string>, 10 human answers). With ``with_bad`` one row per
    :data:`VQA_BAD_KINDS` is added (null image, empty question, undecodable bytes). Returns the
    bad rows' ids."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mmbatch.testing.images import encode, synthetic_image

    rows: list[tuple[str, bytes | None, str, list[str]]] = [
        (f"q-{i:05d}", encode(synthetic_image(i, size)), *vqa_rows(i)) for i in range(n)
    ]
    bad = []
    if with_bad:
        good = rows[0][1]
        bad = [
            ("bad-missing-image", None, "What color is the shape?", ["red"] * 10),
            ("bad-empty-question", good, "", ["red"] * 10),
            ("bad-corrupt-image", b"\xff\xd8\xff\xe0 not a jpeg", "What color is the shape?", ["red"] * 10),
        ]
    rows = rows[: n // 2] + bad + rows[n // 2 :]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table(
            {
                "id": pa.array([r[0] for r in rows], pa.string()),
                "image": pa.array([r[1] for r in rows], pa.binary()),
                "question": pa.array([r[2] for r in rows], pa.string()),
                "answers": pa.array([r[3] for r in rows], pa.list_(pa.string())),
            }
        ),
        path,
    )
    return [r[0] for r in bad]
