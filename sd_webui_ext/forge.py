"""Forge: clone the UnetPatcher, add the output-block patch, write the clone back (as Forge's FreeU does)."""
from skip_tuning_core import SkipPlan, make_output_block_patch, make_ranges

from .params import SkipParams, report_unsupported


def is_forge(p) -> bool:
    """Forge's models carry `forge_objects`; A1111's do not."""
    return hasattr(getattr(p, "sd_model", None), "forge_objects")


def already_patched(unet) -> bool:
    """Forge calls process_before_every_sampling twice in a hires pass: patch once."""
    patches = unet.model_options.get("transformer_options", {}).get("patches", {}).get("output_block_patch", [])
    return any(hasattr(patch, "skip_tuning_plan") for patch in patches)


def patch_forge_unet(p, params: SkipParams) -> bool:
    """Patch a clone of `p.sd_model.forge_objects.unet`; False (and a warning) for a U-Net-less model."""
    unet = p.sd_model.forge_objects.unet
    if already_patched(unet):
        return True
    blocks = getattr(unet.model.diffusion_model, "output_blocks", None)
    if not blocks:
        report_unsupported(p, unet.model.diffusion_model)
        return False
    ranges = make_ranges(len(blocks), params.rho_top, params.rho_bottom, params.start_percent,
                         params.end_percent, params.block_rhos)
    plan = SkipPlan(ranges, len(blocks), unet.model.predictor.percent_to_sigma)
    if not plan.is_identity:
        patched = unet.clone()
        patched.set_model_output_block_patch(make_output_block_patch(plan))
        p.sd_model.forge_objects.unet = patched
    return True
