"""Skip Tuning (Advanced): a per-block rho list and several ranges of the run, each with its own values."""
from ..skip_tuning_core import HELP, SAMPLER_NOTE, skip_tuned
from ..skip_tuning_core.texts import DIT_BLOCK_COUNT
from .skip_tuning import CATEGORY, MODEL_INPUT, MODEL_TOOLTIP, RAMP_INPUTS, SEARCH_ALIASES


class SkipTuningAdvanced:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": MODEL_INPUT, **RAMP_INPUTS,
            # Expert inputs fold under "Advanced Inputs" in the Vue nodes of frontends from 2026.
            "block_rhos": ("STRING", {"default": "", "tooltip": f"{HELP['block_rhos']} ({DIT_BLOCK_COUNT})",
                                      "advanced": True}),
            "ranges": ("STRING", {"default": "0.0-1.0", "multiline": True, "tooltip": HELP["ranges"],
                                  "advanced": True}),
        }}

    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = (MODEL_TOOLTIP,)
    FUNCTION = "apply"
    CATEGORY = CATEGORY
    SEARCH_ALIASES = SEARCH_ALIASES + ["block rhos", "per block"]
    DESCRIPTION = ("Skip Tuning with a per-block rho list and several ranges of the denoising run, each with its "
                   "own values. " + SAMPLER_NOTE)

    def apply(self, model, rho_top, rho_bottom, block_rhos, ranges):
        return (skip_tuned(model, rho_top=rho_top, rho_bottom=rho_bottom, block_rhos=block_rhos, ranges=ranges),)
