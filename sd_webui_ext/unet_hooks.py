"""Skip Tuning on an `ldm` / `sgm` U-Net module (what A1111 runs) with removable torch hooks.

A1111 has no model patcher. Its U-Net forward does `h = cat([h, hs.pop()], dim=1)` and then calls
`output_blocks[j](h, emb, context)` (sd-webui-controlnet's replacement forward does the same), so the
skip is the trailing channels of each output block's input. A pre-hook on the U-Net reads the noise
level of the call from its `timesteps`; a pre-hook on the first layer of each output block (the ResBlock
that takes the concatenated input) scales the skip channels. Hooking that layer rather than the block
also covers U-Nets that run a block's layers one by one (ComfyUI's and Forge's `forward_timestep_embed`).
"""
import torch

from skip_tuning_core import (DEFAULT_RHO_BOTTOM, DEFAULT_RHO_TOP, SkipPlan, SkipTuningError, make_ranges,
                               unsupported_message)

TIMESTEPS = 1000


def percent_to_timestep(percent: float) -> float:
    """The discrete-schedule timestep at a point of the run (0 = pure noise = t 999, 1 = finished = t 0)."""
    return (1.0 - percent) * (TIMESTEPS - 1)


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


class SkipHandle:
    """The hooks of one `attach`; `remove()` (idempotent) takes every one of them off."""

    def __init__(self, plan: SkipPlan, condition):
        self.plan = plan
        self.condition = condition
        self.rhos = None  # the current call's per-block rhos, or None: leave it unscaled
        self.handles = []

    def on_unet_call(self, module, args, kwargs):
        timesteps = kwargs["timesteps"] if "timesteps" in kwargs else (args[1] if len(args) > 1 else None)
        if timesteps is None or (self.condition is not None and not self.condition()):
            self.rhos = None
        else:
            # The one host read of the call; the block hooks only read the plain values it leaves here.
            self.rhos = self.plan.rhos_at(float(timesteps.max()))

    def block_hook(self, j: int, width: int):
        def scale_skip(module, args):
            rhos = self.rhos
            if rhos is None or rhos[j] == 1.0:
                return None
            # In place: the concatenated input is a fresh tensor the U-Net made for this block alone,
            # so this costs no memory.
            args[0][:, -width:].mul_(rhos[j])
            return None
        return scale_skip

    def remove(self):
        while self.handles:
            self.handles.pop().remove()
        self.rhos = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def attach(unet: torch.nn.Module, rho_top=DEFAULT_RHO_TOP, rho_bottom=DEFAULT_RHO_BOTTOM, start_percent=0.0, end_percent=1.0,
           block_rhos: str = "", ranges: str = "", condition=None) -> SkipHandle:
    """Scale the skips of `unet` while it runs; returns a handle whose `remove()` undoes it.

    The options mean what the ComfyUI node's inputs mean. `condition`, if given, is called once per U-Net
    call; when it returns False that call is left unscaled (the WebUI uses it to skip the hires pass).
    """
    widths = skip_widths(unet)
    skip_ranges = make_ranges(len(widths), rho_top, rho_bottom, start_percent, end_percent, block_rhos, ranges)
    handle = SkipHandle(SkipPlan(skip_ranges, len(widths), percent_to_timestep), condition)
    if handle.plan.is_identity:
        return handle
    handle.handles.append(unet.register_forward_pre_hook(handle.on_unet_call, with_kwargs=True))
    for j, (block, width) in enumerate(zip(unet.output_blocks, widths)):
        if any(window.rhos is not None and window.rhos[j] != 1.0 for window in handle.plan.windows):
            first_layer = next(iter(block.children()), block)
            handle.handles.append(first_layer.register_forward_pre_hook(handle.block_hook(j, width)))
    return handle
