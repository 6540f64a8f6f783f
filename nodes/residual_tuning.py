"""The Residual Tuning (DiT, experimental) node: Skip Tuning's idea on a transformer's identity branches."""
from ..skip_tuning_core import HELP, RHO_MAX
from ..skip_tuning_core.presets import load_findings
from ..skip_tuning_core.residual import BLOCKS, DEFAULT_RHO, NAME, residual_tuned

RHO_HELP = ("Scale of the identity branch of the {} chosen block: its output becomes rho * input + branch, linear "
            "in depth between the first and the last. Below 1 weakens the residual stream.")


def rho_input(which):
    return ("FLOAT", {"default": DEFAULT_RHO, "min": 0.0, "max": RHO_MAX, "step": 0.01,
                      "tooltip": RHO_HELP.format(which)})


class ResidualTuning:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "A Flux-family transformer (Flux, Chroma). It is cloned, never changed."}),
            "rho_first": rho_input("first"),
            "rho_last": rho_input("last"),
            "blocks": (list(BLOCKS), {"default": "all", "tooltip": "Which blocks: all, only the double-stream "
                                                                   "ones or only the single-stream ones."}),
            "start_percent": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.001,
                                        "tooltip": HELP["start_percent"]}),
            "end_percent": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.001,
                                      "tooltip": HELP["end_percent"]}),
        }}

    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = ("The model with residual tuning applied while sampling.",)
    FUNCTION = "apply"
    CATEGORY = "model_patches/dit"
    SEARCH_ALIASES = ["residual", "identity branch", "flux skip", "DiT skip tuning"]
    EXPERIMENTAL = True
    DESCRIPTION = (f"{NAME}: scales each transformer block's identity branch (output = rho * input + branch), "
                   "the counterpart of Skip Tuning the Skip Tuning blog suggests for DiTs without long skips. "
                   "Measured only on the pack's small digits DiT, not on a large model: compare on your own "
                   "seeds. " + load_findings().get("residual", ""))

    def apply(self, model, rho_first, rho_last, blocks, start_percent, end_percent):
        return (residual_tuned(model, rho_first, rho_last, blocks, start_percent, end_percent),)
