"""Forge (main, reForge, Classic): tune a clone of the UnetPatcher and write it back, as Forge's FreeU does."""
from skip_tuning_core import SkipTuningError, is_tuned, output_block_count, skip_tuned

from .params import SkipParams, report_unsupported


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
