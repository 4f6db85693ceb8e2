"""Tiny random-weight diffusion pipelines, saved with ``save_pretrained`` like hub checkpoints.

* :func:`build_tiny_stable_diffusion` -- ``StableDiffusionPipeline``: ``UNet2DConditionModel``
  (2 blocks, 4/8 channels, one cross-attention block), ``AutoencoderKL`` (2 blocks: latents are
  half the image size), ``CLIPTextModel`` + ``CLIPTokenizer`` (hidden size 32), and a
  ``DDIMScheduler`` with SD 1.x's beta schedule. Default size 32x32; no safety checker.
* :func:`build_tiny_controlnet` -- a ``ControlNetModel`` that fits that UNet (conditioning images
  at the pipeline's size, downsampled once to the latent size).

Both load offline with ``DiffusionPipeline`` / ``AutoPipelineForText2Image`` /
``ControlNetModel.from_pretrained``; a 2-step 32x32 generation takes a few milliseconds on CPU.
Same call, same bytes.
"""

from __future__ import annotations

from pathlib import Path

from mmbatch.testing import tokenizers as _tok

__all__ = ["build_tiny_stable_diffusion", "build_tiny_controlnet"]

_BLOCKS = (4, 8)
_CROSS_DIM = 32


def _unet_blocks() -> dict:
    return dict(
        block_out_channels=_BLOCKS,
        layers_per_block=1,
        in_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        cross_attention_dim=_CROSS_DIM,
        attention_head_dim=2,
        norm_num_groups=2,
    )


def build_tiny_stable_diffusion(out_dir: str | Path, *, seed: int = 0, image_size: int = 32) -> Path:
    """A ``StableDiffusionPipeline`` folder (``model_index.json``, ``unet/``, ``vae/``,
    ``text_encoder/``, ``tokenizer/``, ``scheduler/``) generating ``image_size``² images."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=image_size // 2,
        out_channels=4,
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        **_unet_blocks(),
    )
    vae = AutoencoderKL(
        block_out_channels=list(_BLOCKS),
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4,
        norm_num_groups=2,
        sample_size=image_size,
    )
    tokenizer = _tok.clip_tokenizer(model_max_length=77)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=_CROSS_DIM,
            intermediate_size=_CROSS_DIM * 2,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        unet=unet.eval(),
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    out = Path(out_dir)
    pipe.save_pretrained(str(out), safe_serialization=True)
    return out


def build_tiny_controlnet(out_dir: str | Path, *, seed: int = 0) -> Path:
    """A ``ControlNetModel`` matching :func:`build_tiny_stable_diffusion`'s UNet."""
    import torch
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    controlnet = ControlNetModel(conditioning_embedding_out_channels=(16, 32), **_unet_blocks())
    out = Path(out_dir)
    controlnet.eval().save_pretrained(str(out), safe_serialization=True)
    return out
