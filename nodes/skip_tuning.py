"""The Skip Tuning node: the paper's linear ramp over one part of the denoising run."""
from ..skip_tuning_core import RHO_MAX, skip_tuned
from .spec import Field, NodeSpec, Out

SAMPLER_NOTE = (
    "The effect depends on the sampler: compare with and without on your own seeds (the Skip Tuning Sweep "
    "node renders such an A/B in one run)."
)

RHO_TOP = Field("rho_top", "FLOAT", "Scale of the skip connection nearest the input (the last output block). "
                "Usually 1.0.", default=1.0, min=0.0, max=RHO_MAX, step=0.01)
RHO_BOTTOM = Field("rho_bottom", "FLOAT", "Scale of the deepest skip connection (the first output block); the "
                   "blocks in between are interpolated linearly. Below 1 weakens the skips (the paper uses "
                   "0.5-0.9 for few-step ODE samplers); above 1 strengthens them. " + SAMPLER_NOTE,
                   default=0.8, min=0.0, max=RHO_MAX, step=0.01)
START_PERCENT = Field("start_percent", "FLOAT", "Where in the denoising run the scaling starts: 0 = the first "
                      "step (pure noise), 1 = the end.", default=0.0, min=0.0, max=1.0, step=0.001)
END_PERCENT = Field("end_percent", "FLOAT", "Where in the denoising run the scaling ends: 1 = the last step.",
                    default=1.0, min=0.0, max=1.0, step=0.001)
MODEL_IN = Field("model", "MODEL", "A U-Net model (SD1.x, SD2.x, SDXL). It is cloned, never changed.")
MODEL_OUT = Out("MODEL", "model", "The model with Skip Tuning applied while sampling.")


def apply(model, rho_top, rho_bottom, start_percent, end_percent):
    """Patch a clone of `model` with the ramp rho_bottom..rho_top between the two percents."""
    return (skip_tuned(model, rho_top=rho_top, rho_bottom=rho_bottom, start_percent=start_percent,
                       end_percent=end_percent),)


NODE = NodeSpec(
    node_id="SkipTuning",
    display_name="Skip Tuning",
    category="model_patches/unet",
    description="Skip Tuning (Ma et al., ICML 2024): scales the U-Net's skip connections, rho_bottom for the "
                "deepest and rho_top for the shallowest, linearly in between. Training-free, no extra "
                "compute. " + SAMPLER_NOTE,
    inputs=(MODEL_IN, RHO_TOP, RHO_BOTTOM, START_PERCENT, END_PERCENT),
    outputs=(MODEL_OUT,),
    run=apply,
)
