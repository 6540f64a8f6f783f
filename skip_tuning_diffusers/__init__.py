"""Skip Tuning (Ma et al., ICML 2024) for diffusers: `attach(unet_or_pipeline, ...)` scales the skip
connections of a diffusers U-Net while it runs, with no change to its weights, until `remove()`.

Each resnet of `unet.up_blocks[*].resnets` (in forward order) takes the last skip left in
`res_hidden_states_tuple`, concatenated after its input, so the deepest skip (j = 0) is the one the first
up resnet takes, as everywhere else in this project (SD1.x/2.x: 12 skips, SDXL: 9).
"""
import math

from skip_tuning_core import DEFAULT_RHO_BOTTOM, DEFAULT_RHO_TOP, SkipTuningError, make_ranges, unsupported_message
from skip_tuning_core.hooks import SkipHandle, call_argument, hook_skips, percent_to_timestep, whole_run

from .residual import attach_residual

__all__ = ["SkipHandle", "attach", "attach_residual", "percent_to_unet_timestep", "skip_resnets"]

# The EDM-conditioned U-Nets diffusers has and the sigma range their pipelines sample (SVD's scheduler config).
EDM_UNETS = {"UNetSpatioTemporalConditionModel": (0.002, 700.0)}
DISCRETE_UNETS = ("UNet2DConditionModel", "UNet3DConditionModel", "I2VGenXLUNet", "UNetMotionModel")


def channels(resnet, name: str) -> int:
    """A resnet's in/out channels; SVD's `SpatioTemporalResBlock` keeps them on its `spatial_res_block`."""
    value = getattr(resnet, name, None)
    return value if isinstance(value, int) else getattr(resnet.spatial_res_block, name)


def skip_resnets(unet) -> tuple:
    """(resnets, skip widths) in forward order: each width is what the resnet's input has beyond the
    hidden states coming up (the mid block's output, or the previous resnet's)."""
    up_blocks, mid = getattr(unet, "up_blocks", None), getattr(unet, "mid_block", None)
    resnets = [resnet for block in (up_blocks or []) for resnet in getattr(block, "resnets", [])]
    if not resnets or mid is None:
        raise SkipTuningError(unsupported_message(type(unet).__name__))
    current = channels(mid.resnets[-1], "out_channels")
    widths = []
    for resnet in resnets:
        widths.append(channels(resnet, "in_channels") - current)
        current = channels(resnet, "out_channels")
    if min(widths) <= 0:
        raise SkipTuningError(unsupported_message(type(unet).__name__))
    return resnets, widths


def edm_timestep(sigma_min: float, sigma_max: float):
    """percent -> 0.25 ln(sigma), sigma log-linear from sigma_max to sigma_min as ComfyUI's
    ModelSamplingContinuousEDM.percent_to_sigma places it; what an EDM-conditioned U-Net receives."""
    def value(percent: float) -> float:
        if percent <= 0.0:
            return math.inf
        if percent >= 1.0:
            return -math.inf
        log_min = math.log(sigma_min)
        return 0.25 * ((math.log(sigma_max) - log_min) * (1.0 - percent) + log_min)
    return value


def discrete_timestep(num_train_timesteps: int):
    """percent -> t = (1 - percent) x (T - 1): a DDPM-style schedule, ComfyUI's ModelSamplingDiscrete."""
    if num_train_timesteps == 1000:
        return percent_to_timestep
    return lambda percent: (1.0 - percent) * (num_train_timesteps - 1)


def percent_to_unet_timestep(unet, scheduler=None):
    """The map from a point of the run (0 = pure noise, 1 = finished) to the timestep value this U-Net receives
    there, as ComfyUI's `percent_to_sigma` places it for the same family; None where it cannot be told.

    From the pipeline's scheduler when there is one (EDM preconditioning: 0.25 ln(sigma); DDPM-style:
    t in [0, T-1]), otherwise from the U-Net class's convention."""
    if scheduler is not None:
        config = getattr(scheduler, "config", {})
        if hasattr(scheduler, "precondition_noise") or (config.get("timestep_type") == "continuous"
                                                        and config.get("prediction_type") == "v_prediction"):
            return edm_timestep(config["sigma_min"], config["sigma_max"])
        if "use_dynamic_shifting" in config or config.get("use_flow_sigmas"):  # flow matching: no fixed map
            return None
        if "num_train_timesteps" in config:
            return discrete_timestep(config["num_train_timesteps"])
        return None
    name = type(unet).__name__
    if name in EDM_UNETS:
        return edm_timestep(*EDM_UNETS[name])
    return percent_to_timestep if name in DISCRETE_UNETS else None


timestep_of = call_argument("timestep", 1)  # every diffusers U-Net's `forward(sample, timestep, ...)`


def attach(unet_or_pipeline, rho_top=DEFAULT_RHO_TOP, rho_bottom=DEFAULT_RHO_BOTTOM, start_percent=0.0,
           end_percent=1.0, block_rhos: str = "", ranges: str = "", condition=None) -> SkipHandle:
    """Scale the U-Net's skips while it runs; returns a handle whose `remove()` (idempotent) undoes it and
    that is also a context manager. Several handles on one U-Net multiply their factors.

    The options mean what the ComfyUI node's inputs mean, 0.0 included (a value, never "off"). A range is
    placed in the run as ComfyUI's `percent_to_sigma` places it for the same family (see
    `percent_to_unet_timestep`), read on the largest timestep of the call's batch; where neither the
    pipeline's scheduler nor the U-Net's class tells where a call is, only the whole run is accepted.
    `condition`, if given, is called once per U-Net call; when it returns False that call is left unscaled
    (SD.Next's hires pass, when it is off). Attach before or after `torch.compile`: either way the U-Net
    keeps one graph, and a new rho value or range compiles nothing new.
    """
    unet = getattr(unet_or_pipeline, "unet", unet_or_pipeline)
    unet = getattr(unet, "_orig_mod", unet)  # `pipe.unet = torch.compile(pipe.unet)`: tune the module inside
    resnets, widths = skip_resnets(unet)
    mapping = percent_to_unet_timestep(unet, getattr(unet_or_pipeline, "scheduler", None))
    if mapping is None:
        asked = make_ranges(len(widths), rho_top, rho_bottom, start_percent, end_percent, block_rhos, ranges)
        if any((r.start_percent, r.end_percent) != (0.0, 1.0) for r in asked):
            where = type(getattr(unet_or_pipeline, "scheduler", unet)).__name__
            raise SkipTuningError(
                f"start_percent, end_percent and ranges: cannot tell where a call of {type(unet).__name__} is in "
                f"the run (from {where}); only the whole run (0-1) can be tuned here")
        mapping = whole_run
    return hook_skips(unet, resnets, widths, timestep_of, rho_top, rho_bottom, start_percent, end_percent,
                      block_rhos, ranges, condition, percent_to_value=mapping)
