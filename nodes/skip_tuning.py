"""The Skip Tuning node: the paper's linear ramp over one part of the denoising run."""
from ..skip_tuning_core import DEFAULT_RHO_BOTTOM, DEFAULT_RHO_TOP, DESCRIPTION, HELP, RHO_MAX, skip_tuned

MODEL_INPUT = ("MODEL", {"tooltip": "A model with long skips: SD1.x, SD2.x, SDXL and the other ldm/sgm U-Nets (SVD, "
                                    "the x4 upscaler, KOALA, ...) or HunyuanDiT. It is cloned, never changed."})
MODEL_TOOLTIP = "The model with Skip Tuning applied while sampling."
CATEGORY = "model_patches/unet"
# What people type when they look for this (frontends from late 2025 search `search_aliases`).
SEARCH_ALIASES = ["skip connection", "skip scale", "rho", "unet skip", "FreeU"]


def rho_input(name, default):
    return ("FLOAT", {"default": default, "min": 0.0, "max": RHO_MAX, "step": 0.01, "tooltip": HELP[name]})


def percent_input(name, default):
    return ("FLOAT", {"default": default, "min": 0.0, "max": 1.0, "step": 0.001, "tooltip": HELP[name]})


RAMP_INPUTS = {"rho_top": rho_input("rho_top", DEFAULT_RHO_TOP),
               "rho_bottom": rho_input("rho_bottom", DEFAULT_RHO_BOTTOM)}
RANGE_INPUTS = {"start_percent": percent_input("start_percent", 0.0),
                "end_percent": percent_input("end_percent", 1.0)}


class SkipTuning:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": MODEL_INPUT, **RAMP_INPUTS, **RANGE_INPUTS}}

    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = (MODEL_TOOLTIP,)
    FUNCTION = "apply"
    CATEGORY = CATEGORY
    SEARCH_ALIASES = SEARCH_ALIASES
    DESCRIPTION = DESCRIPTION + " The Skip Tuning Sweep node renders such an A/B in one run."

    def apply(self, model, rho_top, rho_bottom, start_percent, end_percent):
        return (skip_tuned(model, rho_top=rho_top, rho_bottom=rho_bottom, start_percent=start_percent,
                           end_percent=end_percent),)
