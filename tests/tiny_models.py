"""Tiny U-Nets built through ComfyUI's own model classes, with seeded random weights."""
import math

import torch

import comfy.latent_formats
import comfy.model_patcher
import comfy.sd
import comfy.supported_models
import comfy.taesd.taesd

CONTEXT_DIM = 32
POOLED_DIM = 64

# transformer_depth lists run shallow to deep; UNetModel pops transformer_depth_output from its end.
# SD1-like: the SD1.5 layout (res blocks, cross-attention, downsample, upsample) at 2 levels; attention
# only at the deepest level keeps 512-pixel example workflows quick on CPU.
SD1_UNET = {
    "image_size": 32, "in_channels": 4, "out_channels": 4, "model_channels": 32,
    "num_res_blocks": [2, 2], "channel_mult": [1, 2], "transformer_depth": [0, 0, 1, 1],
    "transformer_depth_output": [0, 0, 0, 1, 1, 1], "transformer_depth_middle": 1,
    "context_dim": CONTEXT_DIM, "num_heads": 2, "num_head_channels": -1, "use_spatial_transformer": True,
    "use_linear_in_transformer": False, "adm_in_channels": None, "use_temporal_attention": False,
    "use_temporal_resblock": False, "legacy": False,
}
# SDXL-like: 3 levels, attention only at the deepest, linear projections, size/pooled conditioning (adm).
SDXL_UNET = {
    "image_size": 32, "in_channels": 4, "out_channels": 4, "model_channels": 32,
    "num_res_blocks": [2, 2, 2], "channel_mult": [1, 2, 2], "transformer_depth": [0, 0, 0, 0, 1, 1],
    "transformer_depth_output": [0, 0, 0, 0, 0, 0, 1, 1, 1], "transformer_depth_middle": 1,
    "context_dim": CONTEXT_DIM, "num_heads": 2, "num_head_channels": -1, "use_spatial_transformer": True,
    "use_linear_in_transformer": True, "adm_in_channels": POOLED_DIM + 6 * 256, "num_classes": "sequential", "use_temporal_attention": False,
    "use_temporal_resblock": False, "legacy": False,
}


class TinySD1(comfy.supported_models.SD15):
    unet_config = SD1_UNET
    unet_extra_config = {}


class TinySDXL(comfy.supported_models.SDXL):
    unet_config = SDXL_UNET
    unet_extra_config = {}


def fill_weights(module: torch.nn.Module, seed: int) -> None:
    """comfy.ops leaves weights uninitialised: give every parameter a seeded, fan-in scaled value."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if param.dim() > 1:
                fan_in = param[0].numel()
                param.copy_(torch.randn(param.shape, generator=generator) / math.sqrt(fan_in))
            elif name.endswith("weight"):
                param.copy_(1.0 + 0.1 * torch.randn(param.shape, generator=generator))
            else:
                param.copy_(0.1 * torch.randn(param.shape, generator=generator))


def tiny_model(kind: str = "sd1", seed: int = 0) -> comfy.model_patcher.ModelPatcher:
    """A ComfyUI MODEL (ModelPatcher) around a tiny SD1- or SDXL-like U-Net on CPU."""
    config_class = {"sd1": TinySD1, "sdxl": TinySDXL}[kind]
    return built_model(config_class(dict(config_class.unet_config)), seed=seed)


def built_model(config, state_dict=None, seed: int = 0) -> comfy.model_patcher.ModelPatcher:
    """A MODEL from a `supported_models` config as ComfyUI's loader makes it (`config.get_model(state_dict)`):
    float32 on CPU, the U-Net's weights seeded. `state_dict` holds only the keys get_model reads (model type)."""
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model(state_dict or {}, device=torch.device("cpu"))
    fill_weights(model.diffusion_model, seed)
    model.eval()
    return comfy.model_patcher.ModelPatcher(model, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))


def tiny_vae(seed: int = 0) -> comfy.sd.VAE:
    """A real ComfyUI VAE object around a TAESD (the small autoencoder) with random weights."""
    taesd = comfy.taesd.taesd.TAESD(latent_channels=4)
    fill_weights(taesd, seed)
    return comfy.sd.VAE(sd=taesd.state_dict())


def conditioning(kind: str, seed: int, batch: int = 1):
    """CONDITIONING as CLIPTextEncode makes it: a context tensor, plus the pooled output for SDXL."""
    return text_conditioning(seed, batch, pooled_dim=POOLED_DIM if kind == "sdxl" else None)


def text_conditioning(seed: int, batch: int = 1, context_dim: int = CONTEXT_DIM, pooled_dim=None, **values):
    """CONDITIONING as a text encoder node makes it: a seeded context of `context_dim`, a pooled output of
    `pooled_dim` if given, and any further `values` in the conditioning's dict."""
    generator = torch.Generator().manual_seed(seed)
    context = torch.randn(batch, 4, context_dim, generator=generator)
    extra = dict(values)
    if pooled_dim:
        extra["pooled_output"] = torch.randn(batch, pooled_dim, generator=generator)
    return [[context, extra]]
