"""Tiny random-weight pipelines of the real diffusers classes, for tests, the overhead
benchmark and end-to-end runs without downloads (``physcut run SCENE --generator vace
--model DIR`` with DIR written by ``save_tiny``).

No text encoder: the pipelines get ``text_encoder=None, tokenizer=None`` and physcut
stores precomputed prompt embeddings of the right shapes beside the weights
(``physcut_prompt_embeds.safetensors``). ``physcut.json`` marks the directory as
random weights and records small sampler defaults (2 steps) so end-to-end runs are
quick. The configs follow the sizes diffusers' own fast tests use.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..base import GeneratorError
from .common import PHYSCUT_JSON, PROMPT_EMBEDS_FILE

FAMILIES = ("ltx2", "vace", "cosmos")
# Sampler defaults stored with a tiny model (read by PretrainedBackend).
TINY_DEFAULTS = {
    "ltx2": {"num_inference_steps": 2, "guidance_scale": 1.0, "stg_scale": 0.0, "modality_scale": 1.0,
             "guidance_rescale": 0.0, "audio_guidance_scale": 1.0, "audio_stg_scale": 0.0,
             "audio_modality_scale": 1.0, "audio_guidance_rescale": 0.0},
    "vace": {"num_inference_steps": 2, "guidance_scale": 1.0},
    "cosmos": {"num_inference_steps": 2, "guidance_scale": 1.0},
}
TINY_WINDOW = {"ltx2": 25, "vace": 13, "cosmos": 25}
TEXT_LEN = 8


def _ltx2(seed: int):
    import torch
    from diffusers import (AutoencoderKLLTX2Audio, AutoencoderKLLTX2Video, FlowMatchEulerDiscreteScheduler,
                           LTX2InContextPipeline, LTX2VideoTransformer3DModel)
    from diffusers.pipelines.ltx2 import LTX2TextConnectors
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder
    cap, layers = 32, 2          # caption channels, "text encoder layers" stacked in the embeddings
    torch.manual_seed(seed)
    transformer = LTX2VideoTransformer3DModel(
        in_channels=4, out_channels=4, patch_size=1, patch_size_t=1, num_attention_heads=2,
        attention_head_dim=8, cross_attention_dim=16, audio_in_channels=4, audio_out_channels=4,
        audio_num_attention_heads=2, audio_attention_head_dim=4, audio_cross_attention_dim=8, num_layers=2,
        qk_norm="rms_norm_across_heads", caption_channels=cap, rope_double_precision=False, rope_type="split")
    connectors = LTX2TextConnectors(
        caption_channels=cap, text_proj_in_factor=layers, video_connector_num_attention_heads=4,
        video_connector_attention_head_dim=8, video_connector_num_layers=1,
        video_connector_num_learnable_registers=None, audio_connector_num_attention_heads=4,
        audio_connector_attention_head_dim=8, audio_connector_num_layers=1,
        audio_connector_num_learnable_registers=None, connector_rope_base_seq_len=32, rope_theta=10000.0,
        rope_double_precision=False, causal_temporal_positioning=False, rope_type="split")
    # Two spatio-temporal stages: 4x spatial, 4x temporal compression (the real VAE: 32x, 8x).
    vae = AutoencoderKLLTX2Video(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8),
        decoder_block_out_channels=(8, 8), layers_per_block=(1, 1, 1), decoder_layers_per_block=(1, 1, 1),
        spatio_temporal_scaling=(True, True), decoder_spatio_temporal_scaling=(True, True),
        decoder_inject_noise=(False, False, False), downsample_type=("spatiotemporal", "spatiotemporal"),
        upsample_type=("spatiotemporal", "spatiotemporal"), upsample_residual=(False, False),
        upsample_factor=(1, 1), timestep_conditioning=False, patch_size=1, patch_size_t=1,
        encoder_causal=True, decoder_causal=False)
    vae.use_framewise_encoding = False
    vae.use_framewise_decoding = False
    # Three levels = the 4x time and mel compression the pipeline assumes; latent_channels *
    # mel_bins / 4 == base_channels, the size of its latent statistics (as in the real VAE).
    audio_vae = AutoencoderKLLTX2Audio(
        base_channels=4, output_channels=2, ch_mult=(1, 1, 1), num_res_blocks=1, attn_resolutions=None,
        in_channels=2, resolution=32, latent_channels=2, norm_type="pixel", causality_axis="height",
        dropout=0.0, mid_block_add_attention=False, sample_rate=16000, mel_hop_length=160, is_causal=True,
        mel_bins=8)
    # Upsampling 10 * 16 = 160 = the mel hop, so the vocoder speaks at 16 kHz like the audio VAE.
    vocoder = LTX2Vocoder(
        in_channels=2 * 8, hidden_channels=16, out_channels=2, upsample_kernel_sizes=[20, 32],
        upsample_factors=[10, 16], resnet_kernel_sizes=[3], resnet_dilations=[[1, 3, 5]],
        leaky_relu_negative_slope=0.1, output_sampling_rate=16000)
    pipe = LTX2InContextPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, audio_vae=audio_vae,
                                 text_encoder=None, tokenizer=None, connectors=connectors,
                                 transformer=transformer, vocoder=vocoder)
    g = torch.Generator().manual_seed(seed + 1)
    embeds = {"prompt_embeds": torch.randn(1, TEXT_LEN, cap * layers, generator=g),
              "prompt_attention_mask": torch.ones(1, TEXT_LEN, dtype=torch.long),
              "negative_prompt_embeds": torch.randn(1, TEXT_LEN, cap * layers, generator=g),
              "negative_prompt_attention_mask": torch.ones(1, TEXT_LEN, dtype=torch.long)}
    return pipe, embeds


def _wan_vae(seed: int):
    import torch
    from diffusers import AutoencoderKLWan
    torch.manual_seed(seed)
    return AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                            temperal_downsample=[False, True, True])


def _vace(seed: int):
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, WanVACEPipeline, WanVACETransformer3DModel
    vae = _wan_vae(seed)
    torch.manual_seed(seed)
    transformer = WanVACETransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
        text_dim=32, freq_dim=256, ffn_dim=32, num_layers=3, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=32, vace_layers=[0, 2], vace_in_channels=96)
    pipe = WanVACEPipeline(tokenizer=None, text_encoder=None, vae=vae, transformer=transformer,
                           scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0))
    g = torch.Generator().manual_seed(seed + 1)
    embeds = {"prompt_embeds": torch.randn(1, TEXT_LEN, 32, generator=g),
              "negative_prompt_embeds": torch.randn(1, TEXT_LEN, 32, generator=g)}
    return pipe, embeds


def cosmos_controlnet(seed: int):
    """One tiny ``CosmosControlNetModel`` (Transfer2.5 has one per control type)."""
    import torch
    from diffusers import CosmosControlNetModel
    torch.manual_seed(seed)
    return CosmosControlNetModel(
        n_controlnet_blocks=2, in_channels=16 + 1 + 1, latent_channels=16 + 1 + 1, model_channels=32,
        num_attention_heads=2, attention_head_dim=16, mlp_ratio=2, text_embed_dim=32, adaln_lora_dim=4,
        patch_size=(1, 2, 2), max_size=(32, 64, 64), rope_scale=(2.0, 1.0, 1.0),
        extra_pos_embed_type="learnable", img_context_dim_in=32, img_context_dim_out=32,
        use_crossattn_projection=False)


def _cosmos(seed: int):
    import torch
    from diffusers import Cosmos2_5_TransferPipeline, CosmosTransformer3DModel, UniPCMultistepScheduler
    from .cosmos import RandomWeightsSafetyChecker
    vae = _wan_vae(seed)
    torch.manual_seed(seed)
    transformer = CosmosTransformer3DModel(
        in_channels=16 + 1, out_channels=16, num_attention_heads=2, attention_head_dim=16, num_layers=2,
        mlp_ratio=2, text_embed_dim=32, adaln_lora_dim=4, max_size=(32, 64, 64), patch_size=(1, 2, 2),
        rope_scale=(2.0, 1.0, 1.0), concat_padding_mask=True, extra_pos_embed_type="learnable",
        controlnet_block_every_n=1, img_context_dim_in=32, img_context_num_tokens=4, img_context_dim_out=32)
    pipe = Cosmos2_5_TransferPipeline(text_encoder=None, tokenizer=None, transformer=transformer, vae=vae,
                                      scheduler=UniPCMultistepScheduler(), controlnet=cosmos_controlnet(seed),
                                      safety_checker=RandomWeightsSafetyChecker())
    g = torch.Generator().manual_seed(seed + 1)
    embeds = {"prompt_embeds": torch.randn(1, TEXT_LEN, 32, generator=g),
              "negative_prompt_embeds": torch.randn(1, TEXT_LEN, 32, generator=g)}
    return pipe, embeds


def build_tiny(family: str, seed: int = 0):
    """(pipeline, prompt_embeds dict): a tiny random-weight diffusers pipeline of the
    real classes for ``family`` in ("ltx2", "vace", "cosmos"). For Cosmos the extra
    controlnets (segmentation, edge) come from ``tiny_cosmos_controlnets``."""
    builders = {"ltx2": _ltx2, "vace": _vace, "cosmos": _cosmos}
    if family not in builders:
        raise GeneratorError(f"unknown family {family!r}; valid: {', '.join(FAMILIES)}")
    return builders[family](seed)


def tiny_cosmos_controlnets(seed: int = 0) -> dict:
    """Extra tiny controlnets for the Cosmos multi-control path, keyed by control type."""
    return {"seg": cosmos_controlnet(seed + 10), "edge": cosmos_controlnet(seed + 20)}


def save_tiny(family: str, directory, seed: int = 0) -> Path:
    """Write a tiny random-weight model directory for ``family`` (diffusers layout,
    safetensors only) that ``generator.load(family, model=directory)`` loads.
    Returns the directory. This is the function behind ``physcut`` end-to-end tests."""
    from safetensors.torch import save_file
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    pipe, embeds = build_tiny(family, seed)
    if family == "cosmos":
        # The pass-through checker is for random weights only: keep it out of the saved
        # pipeline (physcut supplies it again when physcut.json says random_weights).
        pipe.save_pretrained(d, safe_serialization=True)
        mi = d / "model_index.json"
        idx = json.loads(mi.read_text())
        idx["safety_checker"] = [None, None]
        mi.write_text(json.dumps(idx, indent=2))
        shutil.rmtree(d / "safety_checker", ignore_errors=True)
        for name, net in tiny_cosmos_controlnets(seed).items():
            net.save_pretrained(d / f"controlnet_{name}", safe_serialization=True)
    else:
        pipe.save_pretrained(d, safe_serialization=True)
    save_file({k: v.contiguous() for k, v in embeds.items()}, str(d / PROMPT_EMBEDS_FILE))
    extra = {"cosmos": {"controls": {"depth": "controlnet", "seg": "controlnet_seg", "edge": "controlnet_edge"}}}
    (d / PHYSCUT_JSON).write_text(json.dumps({
        "family": family, "random_weights": True, "seed": seed,
        "note": "tiny random-weight pipeline written by generator.backends.tiny.save_tiny (tests only)",
        "window": TINY_WINDOW[family], "overlap": 4, "defaults": TINY_DEFAULTS[family],
        **extra.get(family, {})}, indent=1))
    return d
