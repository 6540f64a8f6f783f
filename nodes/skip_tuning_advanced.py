"""Skip Tuning (Advanced): a per-block rho list and several ranges of the run, each with its own values."""
from ..skip_tuning_core import skip_tuned
from .skip_tuning import MODEL_IN, MODEL_OUT, RHO_BOTTOM, RHO_TOP, SAMPLER_NOTE
from .spec import Field, NodeSpec

BLOCK_RHOS = Field("block_rhos", "STRING", "Optional: one rho per output block, deepest first (SD1.x/SD2.x: 12 "
                   "values, SDXL: 9), e.g. '0.8, 0.8, 0.85, ...'. Empty uses the rho_top/rho_bottom ramp.",
                   default="")
RANGES = Field("ranges", "STRING", "One range of the denoising run per line (0 = pure noise, 1 = end): "
               "'start-end' uses the values above; 'start-end: top, bottom' gives that range its own ramp; "
               "'start-end: r0, r1, ...' its own per-block list. Where ranges overlap, the first listed wins; "
               "steps outside every range are not scaled. '#' starts a comment.",
               default="0.0-1.0", multiline=True)


def apply(model, rho_top, rho_bottom, block_rhos, ranges):
    """Patch a clone of `model` with per-range rho values."""
    return (skip_tuned(model, rho_top=rho_top, rho_bottom=rho_bottom, block_rhos=block_rhos, ranges=ranges),)


NODE = NodeSpec(
    node_id="SkipTuningAdvanced",
    display_name="Skip Tuning (Advanced)",
    category="model_patches/unet",
    description="Skip Tuning with a per-block rho list and several ranges of the denoising run, each with its "
                "own values. " + SAMPLER_NOTE,
    inputs=(MODEL_IN, RHO_TOP, RHO_BOTTOM, BLOCK_RHOS, RANGES),
    outputs=(MODEL_OUT,),
    run=apply,
)
