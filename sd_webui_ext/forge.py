"""Forge (main, reForge, Classic): tune a clone of the UnetPatcher and write it back, as Forge's FreeU does.
Residual Tuning on Forge's Flux-family transformers, which look up no block replacements, hooks their blocks
for the span of `p.sample` instead."""
from skip_tuning_core import SkipTuningError, is_tuned, output_block_count, skip_tuned
from skip_tuning_core.hooks import call_argument
from skip_tuning_core.patcher import sampling_schedule
from skip_tuning_core.residual import hook_residuals, residual_blocks

from .params import ResidualParams, SkipParams, report_unsupported


REFUSED = "skip_tuning_refused_unet"  # on `p`: the U-Net without skips already reported


def is_forge(p) -> bool:
    """Forge's models carry `forge_objects`; A1111's do not."""
    return hasattr(getattr(p, "sd_model", None), "forge_objects")


def patch_forge_unet(p, params: SkipParams) -> bool:
    """Patch a clone of `p.sd_model.forge_objects.unet`; False (and a warning) for a U-Net-less model.

    Forge calls process_before_every_sampling twice in a hires pass, and this runs again at every denoiser
    step (for the refiner): a U-Net already tuned stays as it is, and one without skips is reported once.
    """
    unet = p.sd_model.forge_objects.unet
    if is_tuned(unet):
        return True
    if getattr(p, REFUSED, None) is unet:
        return False
    try:
        output_block_count(unet)
    except SkipTuningError:
        setattr(p, REFUSED, unet)
        report_unsupported(p, unet.model.diffusion_model)
        return False
    p.sd_model.forge_objects.unet = skip_tuned(
        unet, function_wrapper=True, rho_top=params.rho_top, rho_bottom=params.rho_bottom,
        start_percent=params.start_percent, end_percent=params.end_percent, block_rhos=params.block_rhos)
    return True


# Forge's Flux and Chroma blocks: a double-stream block is called `block(img=, txt=, ...)` and returns (img, txt),
# a single-stream one `block(x, ...)` and returns x (Forge main backend/nn/flux.py 388-392, chroma.py 274-278;
# Forge Neo's flux.py `forward_orig`, ported from ComfyUI's, the same with `transformer_options=`).
DOUBLE_STREAMS = (("img", 0), ("txt", 1))
SINGLE_STREAMS = (("x", 0),)


timestep_of = call_argument("timestep", 1)  # `IntegratedFluxTransformer2DModel.forward(x, timestep, ...)`, Chroma's too


def attach_residual(unet, params: ResidualParams):
    """Residual tuning on the blocks of the transformer in Forge's UnetPatcher `unet`, until the handle's
    `remove()`; the range placed on that model's schedule (Forge's `predictor`, `model_sampling` elsewhere)."""
    import torch

    dit = unet.model.diffusion_model
    double, single = getattr(dit, "double_blocks", None), getattr(dit, "single_blocks", None)
    chosen = residual_blocks(double, single, params.blocks, type(dit).__name__)
    modules = [(double[index], DOUBLE_STREAMS) if kind == "double_block" else (single[index], SINGLE_STREAMS)
               for kind, index in chosen]
    schedule = sampling_schedule(unet.model)

    def percent_to_timestep(percent: float) -> float:
        return float(schedule.timestep(torch.tensor(float(schedule.percent_to_sigma(percent)))))

    return hook_residuals(dit, modules, timestep_of, percent_to_timestep, params.rho_first, params.rho_last,
                          params.start_percent, params.end_percent)
