"""Skip Tuning with removable forward pre-hooks, for U-Nets run without a model patcher (A1111's ldm/sgm
U-Net, diffusers' UNet2DConditionModel). It only calls methods of the modules and tensors it is handed,
so the core still imports no torch.

Each hooked layer takes `cat([h, skip], dim=1)` as its first argument, so the skip is the trailing
channels of that input. A pre-hook on the U-Net reads the call's timestep once; the layer hooks only read
the per-block rhos it leaves.
"""
from .schedule import DEFAULT_RHO_BOTTOM, DEFAULT_RHO_TOP, SkipPlan, make_ranges

TIMESTEPS = 1000


def percent_to_timestep(percent: float) -> float:
    """The discrete-schedule timestep at a point of the run (0 = pure noise = t 999, 1 = finished = t 0)."""
    return (1.0 - percent) * (TIMESTEPS - 1)


def largest(value) -> float:
    """The largest timestep of a call (a tensor of any shape, or a number)."""
    return float(value.max()) if hasattr(value, "max") else float(value)


class SkipHandle:
    """The hooks of one `hook_skips`; `remove()` (idempotent) takes every one of them off."""

    def __init__(self, plan: SkipPlan, read_timestep, condition):
        self.plan = plan
        self.read_timestep = read_timestep
        self.condition = condition
        self.rhos = None  # the current call's per-skip rhos, or None: leave it unscaled
        self.handles = []

    def on_unet_call(self, module, args, kwargs):
        timestep = self.read_timestep(args, kwargs)
        if timestep is None or (self.condition is not None and not self.condition()):
            self.rhos = None
        else:
            self.rhos = self.plan.rhos_at(largest(timestep))

    def skip_hook(self, j: int, width: int):
        def scale_skip(module, args):
            rhos = self.rhos
            if rhos is None or rhos[j] == 1.0:
                return None
            # In place: the concatenated input is a fresh tensor the U-Net made for this layer alone,
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


def hook_skips(unet, layers, widths, read_timestep, rho_top=DEFAULT_RHO_TOP, rho_bottom=DEFAULT_RHO_BOTTOM,
               start_percent=0.0, end_percent=1.0, block_rhos: str = "", ranges: str = "", condition=None) -> SkipHandle:
    """Scale skip j (0 = deepest), the last widths[j] input channels of layers[j], while `unet` runs.

    The options mean what the ComfyUI node's inputs mean; a range is read on the timestep the U-Net
    receives (`read_timestep(args, kwargs)`). `condition`, if given, is called once per U-Net call; when it
    returns False that call is left unscaled.
    """
    skip_ranges = make_ranges(len(widths), rho_top, rho_bottom, start_percent, end_percent, block_rhos, ranges)
    handle = SkipHandle(SkipPlan(skip_ranges, len(widths), percent_to_timestep), read_timestep, condition)
    if handle.plan.is_identity:
        return handle
    handle.handles.append(unet.register_forward_pre_hook(handle.on_unet_call, with_kwargs=True))
    for j, (layer, width) in enumerate(zip(layers, widths)):
        if any(window.rhos is not None and window.rhos[j] != 1.0 for window in handle.plan.windows):
            handle.handles.append(layer.register_forward_pre_hook(handle.skip_hook(j, width)))
    return handle
