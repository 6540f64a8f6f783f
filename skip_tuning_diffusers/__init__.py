"""Skip Tuning (Ma et al., ICML 2024) for diffusers: `attach(unet_or_pipeline, ...)` scales the skip
connections of a `UNet2DConditionModel` while it runs, with removable hooks and no change to its weights.

Each resnet of `unet.up_blocks[*].resnets` (in forward order) takes the last skip left in
`res_hidden_states_tuple`, concatenated after its input, so the deepest skip (j = 0) is the one the first
up resnet takes, as everywhere else in this project (SD1.x/2.x: 12 skips, SDXL: 9).
"""
from skip_tuning_core import DEFAULT_RHO_BOTTOM, DEFAULT_RHO_TOP, SkipTuningError, unsupported_message
from skip_tuning_core.hooks import SkipHandle, hook_skips

__all__ = ["SkipHandle", "attach", "skip_resnets"]


def skip_resnets(unet) -> tuple:
    """(resnets, skip widths) in forward order: each width is what the resnet's input has beyond the
    hidden states coming up (the mid block's output, or the previous resnet's)."""
    up_blocks, mid = getattr(unet, "up_blocks", None), getattr(unet, "mid_block", None)
    resnets = [resnet for block in (up_blocks or []) for resnet in getattr(block, "resnets", [])]
    if not resnets or mid is None:
        raise SkipTuningError(unsupported_message(type(unet).__name__))
    channels = mid.resnets[-1].out_channels
    widths = []
    for resnet in resnets:
        widths.append(resnet.in_channels - channels)
        channels = resnet.out_channels
    if min(widths) <= 0:
        raise SkipTuningError(unsupported_message(type(unet).__name__))
    return resnets, widths


def timestep_of(args, kwargs):
    """`UNet2DConditionModel.forward(sample, timestep, encoder_hidden_states, ...)`."""
    return kwargs["timestep"] if "timestep" in kwargs else (args[1] if len(args) > 1 else None)


def attach(unet_or_pipeline, rho_top=DEFAULT_RHO_TOP, rho_bottom=DEFAULT_RHO_BOTTOM, start_percent=0.0,
           end_percent=1.0, block_rhos: str = "", ranges: str = "", condition=None) -> SkipHandle:
    """Scale the U-Net's skips while it runs; returns a handle whose `remove()` (idempotent) undoes it and
    that is also a context manager.

    The options mean what the ComfyUI node's inputs mean; a range is read on the timestep the U-Net
    receives (the largest in the batch), t = (1 - percent) x 999. `condition`, if given, is called once per
    U-Net call; when it returns False that call is left unscaled (SD.Next's hires pass, when it is off).
    """
    unet = getattr(unet_or_pipeline, "unet", unet_or_pipeline)
    resnets, widths = skip_resnets(unet)
    return hook_skips(unet, resnets, widths, timestep_of, rho_top, rho_bottom, start_percent, end_percent,
                      block_rhos, ranges, condition)
