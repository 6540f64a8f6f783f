"""The Residual Tuning (DiT, experimental) node: Skip Tuning's idea on a transformer's identity branches."""
from ..skip_tuning_core import RHO_MAX
from ..skip_tuning_core.residual import BLOCKS, DEFAULT_RHO, NAME, residual_tuned
from ..skip_tuning_core.texts import RESIDUAL_DESCRIPTION, RESIDUAL_HELP


def rho_input(name):
    return ("FLOAT", {"default": DEFAULT_RHO, "min": 0.0, "max": RHO_MAX, "step": 0.01,
                      "tooltip": RESIDUAL_HELP[name]})


def percent_input(name, default):
    return ("FLOAT", {"default": default, "min": 0.0, "max": 1.0, "step": 0.001, "tooltip": RESIDUAL_HELP[name]})


class ResidualTuning:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": RESIDUAL_HELP["model"]}),
            "rho_first": rho_input("rho_first"),
            "rho_last": rho_input("rho_last"),
            "blocks": (list(BLOCKS), {"default": "all", "tooltip": RESIDUAL_HELP["blocks"]}),
            "start_percent": percent_input("start_percent", 0.0),
            "end_percent": percent_input("end_percent", 1.0),
        }}

    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = ("The model with residual tuning applied while sampling.",)
    FUNCTION = "apply"
    CATEGORY = "model_patches/dit"
    SEARCH_ALIASES = ["residual", "identity branch", "flux skip", "DiT skip tuning"]
    EXPERIMENTAL = True
    DESCRIPTION = f"{NAME}: {RESIDUAL_DESCRIPTION}"

    def apply(self, model, rho_first, rho_last, blocks, start_percent, end_percent):
        return (residual_tuned(model, rho_first, rho_last, blocks, start_percent, end_percent),)
