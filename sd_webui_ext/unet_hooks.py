"""Skip Tuning on an `ldm` / `sgm` U-Net module (what A1111 runs) with removable torch hooks.

A1111 has no model patcher. Its U-Net forward does `h = cat([h, hs.pop()], dim=1)` and then calls
`output_blocks[j](h, emb, context)` (sd-webui-controlnet's replacement forward does the same), so the
skip is the trailing channels of each output block's input: the core's hooks go on the first layer of
each output block (the ResBlock that takes the concatenated input), which also covers U-Nets that run a
block's layers one by one (ComfyUI's and Forge's `forward_timestep_embed`), and read the noise level of
each call from the U-Net's `timesteps`.
"""
import torch

from skip_tuning_core import DEFAULT_RHO_BOTTOM, DEFAULT_RHO_TOP, SkipTuningError, unsupported_message
from skip_tuning_core.hooks import SkipHandle, call_argument, hook_skips


def block_out_channels(block: torch.nn.Module) -> int:
    """Channels an input block emits (its skip width): the last layer of it that declares out_channels."""
    for layer in reversed(list(block.children()) or [block]):
        channels = getattr(layer, "out_channels", None)
        if isinstance(channels, int):
            return channels
    raise SkipTuningError(f"unet: cannot tell the skip width of input block {type(block).__name__}")


def skip_widths(unet: torch.nn.Module) -> list:
    """Skip channels entering each output block: block j pops the skip of input block N-1-j."""
    inputs, outputs = getattr(unet, "input_blocks", None), getattr(unet, "output_blocks", None)
    if inputs is None or outputs is None or len(outputs) == 0 or len(inputs) != len(outputs):
        raise SkipTuningError("unet: " + unsupported_message(type(unet).__name__))
    n = len(outputs)
    return [block_out_channels(inputs[n - 1 - j]) for j in range(n)]


timesteps_of = call_argument("timesteps", 1)  # ldm/sgm `UNetModel.forward(x, timesteps, context, ...)`


def attach(unet: torch.nn.Module, rho_top=DEFAULT_RHO_TOP, rho_bottom=DEFAULT_RHO_BOTTOM, start_percent=0.0, end_percent=1.0,
           block_rhos: str = "", ranges: str = "", condition=None) -> SkipHandle:
    """Scale the skips of an ldm/sgm `unet` while it runs; returns a handle whose `remove()` undoes it.

    The options mean what the ComfyUI node's inputs mean. `condition`, if given, is called once per U-Net
    call; when it returns False that call is left unscaled (the WebUI uses it to skip the hires pass).
    """
    widths = skip_widths(unet)
    layers = [next(iter(block.children()), block) for block in unet.output_blocks]
    return hook_skips(unet, layers, widths, timesteps_of, rho_top, rho_bottom, start_percent, end_percent,
                      block_rhos, ranges, condition)
