"""Lab nodes: load the small digits diffusion model this project trains, and condition it on a digit.

The model is ComfyUI's own UNetModel (3 levels, 6 output blocks, cross-attention on the digit) in pixel space, epsilon prediction
on Stable Diffusion's discrete schedule, so every ComfyUI sampler, scheduler and U-Net patch applies.
"""
import json
from pathlib import Path

import torch

import comfy.latent_formats
import comfy.model_management
import comfy.model_patcher
import comfy.sd
import comfy.supported_models
import comfy.supported_models_base
import comfy.utils

if not hasattr(comfy.latent_formats, "ChromaRadiance"):
    raise ImportError("the lab nodes need ComfyUI 0.3.59 or later (its ChromaRadiance pixel-space latent format)")

MODELS_DIR = Path(__file__).resolve().parents[1] / "lab_models"
NULL_DIGIT = 10  # "any digit": the unconditional token, and the negative prompt for CFG
CONTEXT_DIM = 16  # one-hot over 11 tokens, zero-padded
DIGIT_CHOICES = ("any",) + tuple(str(d) for d in range(10))

UNET_CONFIG = {
    "image_size": 16, "in_channels": 3, "out_channels": 3, "model_channels": 32,
    "num_res_blocks": [1, 1, 1], "channel_mult": [1, 1, 2],
    # Attention only at 4x4 and in the middle keeps a sampling step cheap enough for the full quality sweep.
    # ComfyUI pops transformer_depth_output from its end: the last entries belong to the deepest output blocks.
    "transformer_depth": [0, 0, 1], "transformer_depth_output": [0, 0, 0, 0, 1, 1],
    "transformer_depth_middle": 1, "context_dim": CONTEXT_DIM, "num_heads": 2, "num_head_channels": -1,
    "use_spatial_transformer": True, "use_linear_in_transformer": True, "adm_in_channels": None,
    "use_temporal_attention": False, "use_temporal_resblock": False, "legacy": False,
}


class DigitsModelConfig(comfy.supported_models_base.BASE):
    """Pixel-space RGB 'latents' (ComfyUI's ChromaRadiance format) and the default SD1 discrete schedule."""

    unet_config = UNET_CONFIG
    unet_extra_config = {}
    latent_format = comfy.latent_formats.ChromaRadiance


# ComfyUI's own Flux transformer (double then single stream blocks) on 2x2 pixel patches, conditioned on the digit
# token through its text stream: the lab's DiT, for measuring residual tuning.
DIT_CONFIG = {
    "image_model": "flux", "in_channels": 3, "out_channels": 3, "patch_size": 2, "vec_in_dim": None,
    "context_in_dim": CONTEXT_DIM, "hidden_size": 96, "mlp_ratio": 2.0, "num_heads": 4, "depth": 2,
    "depth_single_blocks": 3, "axes_dim": [4, 10, 10], "theta": 10000, "qkv_bias": True, "guidance_embed": False,
}


class DigitsDiTConfig(comfy.supported_models.Flux):
    """Flux's rectified-flow sampling (shift 1: 16x16 pixels need none) on pixel-space RGB."""

    unet_config = DIT_CONFIG
    sampling_settings = {"shift": 1.0}
    latent_format = comfy.latent_formats.ChromaRadiance


def build_digits_model(unet_config=UNET_CONFIG, device=None):
    """A ComfyUI BaseModel around the digits U-Net, or the DiT for a Flux config (weights still to be loaded or
    initialised)."""
    config_class = DigitsDiTConfig if unet_config.get("image_model") == "flux" else DigitsModelConfig
    config = config_class(dict(unet_config))
    config.set_inference_dtype(torch.float32, None)
    return config.get_model({}, device=device)


def digit_context(digits: torch.Tensor) -> torch.Tensor:
    """Digit tokens [N] (0-9, or NULL_DIGIT) as the cross-attention context [N, 1, CONTEXT_DIM]."""
    return torch.nn.functional.one_hot(digits, CONTEXT_DIM).float()[:, None, :]


def model_files() -> list:
    """The digits models shipped in lab_models/."""
    return sorted(path.name for path in MODELS_DIR.glob("*.safetensors"))


def load_digits_model(model_name):
    """(MODEL, VAE): the digits model from lab_models/ and the pixel-space VAE ComfyUI ships."""
    if model_name not in model_files():
        raise ValueError(f"model_name: no digits model {model_name!r} in {MODELS_DIR}; have {model_files()}")
    return load_digits_file(MODELS_DIR / model_name)


def load_digits_file(path):
    """(MODEL, VAE) from a digits model file anywhere (the lab's commands score files they just wrote)."""
    state_dict, metadata = comfy.utils.load_torch_file(str(path), return_metadata=True)
    load_device = comfy.model_management.get_torch_device()
    model = build_digits_model(json.loads(metadata["unet_config"]), device=load_device)
    model.diffusion_model.load_state_dict({k: v.float() for k, v in state_dict.items()})
    model.eval()
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=load_device,
                                               offload_device=comfy.model_management.unet_offload_device())
    vae = comfy.sd.VAE(sd={"pixel_space_vae": torch.tensor(1.0)})
    return patcher, vae


def digit_conditioning(digit):
    """CONDITIONING for one digit ('0'-'9') or 'any'."""
    if digit not in DIGIT_CHOICES:
        raise ValueError(f"digit must be one of {', '.join(DIGIT_CHOICES)}, got {digit!r}")
    context = digit_context(torch.tensor([NULL_DIGIT if digit == "any" else int(digit)]))
    # Flux's model_base reads a pooled vector whatever its config; the lab DiT ignores it, the U-Net never reads it.
    return ([[context, {"pooled_output": context[:, 0]}]],)


class DigitsLoader:
    @classmethod
    def INPUT_TYPES(cls):
        files = model_files()
        return {"required": {"model_name": (files, {"default": (files or [""])[0],
                                                    "tooltip": "A model file from the pack's lab_models folder."})}}

    RETURN_TYPES = ("MODEL", "VAE")
    RETURN_NAMES = ("model", "vae")
    OUTPUT_TOOLTIPS = ("The digits U-Net.", "Pixel-space VAE (no compression).")
    FUNCTION = "load"
    CATEGORY = "Skip Tuning/lab"
    DESCRIPTION = ("Loads a small digits diffusion model shipped with this pack (16x16 pixels, trained on "
                   "scikit-learn's digits) and its pixel-space VAE, to try Skip Tuning without any download. "
                   "Use a 16x16 EmptyChromaRadianceLatentImage. digits16: the U-Net; digits16_lcm: its few-step "
                   "LCM student (put ModelSamplingDiscrete set to lcm after it and sample with the lcm sampler, "
                   "1-8 steps); digits16_dit: the lab's DiT on ComfyUI's Flux classes, which Skip Tuning refuses "
                   "(no long skips; see the pack's README on residual tuning).")

    def load(self, model_name):
        return load_digits_model(model_name)


class DigitPrompt:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"digit": (list(DIGIT_CHOICES), {"default": "any",
                                                             "tooltip": "The digit to draw, or 'any'."})}}

    RETURN_TYPES = ("CONDITIONING",)
    RETURN_NAMES = ("conditioning",)
    OUTPUT_TOOLTIPS = ("Feed to a sampler's positive or negative input.",)
    FUNCTION = "encode"
    CATEGORY = "Skip Tuning/lab"
    DESCRIPTION = ("Conditioning for the digits model: which digit to draw. 'any' is the unconditional prompt; "
                   "use it as the negative for CFG.")

    def encode(self, digit):
        return digit_conditioning(digit)


NODE_CLASS_MAPPINGS = {"SkipTuningDigitsLoader": DigitsLoader, "SkipTuningDigitPrompt": DigitPrompt}
# At most 32 characters: the node search of frontend 1.58 finds nothing for a longer query.
NODE_DISPLAY_NAME_MAPPINGS = {"SkipTuningDigitsLoader": "Load Digits (Skip Tuning lab)",
                              "SkipTuningDigitPrompt": "Digit Prompt (Skip Tuning lab)"}
