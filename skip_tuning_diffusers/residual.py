"""Residual tuning (experimental) for diffusers' Flux-family transformers (`FluxTransformer2DModel`,
`ChromaTransformer2DModel`): `attach_residual(transformer_or_pipeline, ...)` until `remove()`.

Their blocks take `hidden_states` and `encoder_hidden_states` and return `(encoder_hidden_states, hidden_states)`,
or the joined `hidden_states` alone (Chroma's single-stream blocks), and add their branches out of place
(diffusers 0.42 transformer_flux.py 383-412 and 443-497, transformer_chroma.py 231-261), so the core's module
hooks serve them. The pipelines hand the transformer sigma itself (`timestep=timestep / 1000`).
"""
import functools
import inspect
import math

from skip_tuning_core import SkipPlan, SkipTuningError
from skip_tuning_core.hooks import call_argument, whole_run
from skip_tuning_core.residual import DEFAULT_RHO, NAME, hook_residuals, residual_blocks

STREAMS = (("encoder_hidden_states", 1), ("hidden_states", 0))
# Schedules whose sigmas are not the flow-matching shift of 1 - percent that ComfyUI's ModelSamplingFlux and
# ModelSamplingDiscreteFlow place ranges on.
RESHAPED = ("shift_terminal", "use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "invert_sigmas",
            "stochastic_sampling")


def flow_sigma(scheduler, mu=None):
    """percent -> sigma as ComfyUI places it for flow models (ModelSamplingFlux with shift = mu when the scheduler
    shifts by resolution, ModelSamplingDiscreteFlow with the fixed shift otherwise), with the scheduler's own
    shift. Before a dynamically shifting scheduler knows its mu, no point of the run is placed (nan)."""
    def value(percent: float) -> float:
        if percent <= 0.0:
            return math.inf
        if percent >= 1.0:
            return -math.inf
        t = 1.0 - percent
        if scheduler.config.get("use_dynamic_shifting"):
            return math.nan if mu is None else float(scheduler.time_shift(mu, 1.0, t))
        shift = scheduler.shift
        return shift * t / (1.0 + (shift - 1.0) * t)
    return value


def follow_the_shift(handle, scheduler) -> None:
    """Re-place the handle's ranges each time the pipeline sets the scheduler's timesteps with the `mu` of its
    resolution (FluxPipeline and ChromaPipeline compute it from the image's token count)."""
    set_timesteps = scheduler.set_timesteps
    signature = inspect.signature(set_timesteps)

    # The pipelines ask `inspect.signature(scheduler.set_timesteps)` whether it takes `sigmas` (retrieve_timesteps):
    # wraps() keeps the answer.
    @functools.wraps(set_timesteps)
    def set_timesteps_and_place(*args, **kwargs):
        result = set_timesteps(*args, **kwargs)
        mu = signature.bind(*args, **kwargs).arguments.get("mu")
        plan = handle.plan
        handle.place(SkipPlan(plan.ranges, plan.num_blocks, flow_sigma(scheduler, mu)))
        return result

    scheduler.set_timesteps = set_timesteps_and_place
    handle.cleanups.append(lambda: vars(scheduler).pop("set_timesteps", None))


# `forward(hidden_states, encoder_hidden_states, pooled_projections, timestep, ...)` (Flux; Chroma has no pooled
# projections and takes it by keyword).
timestep_of = call_argument("timestep", 3)


def attach_residual(transformer_or_pipeline, rho_first=DEFAULT_RHO, rho_last=DEFAULT_RHO, blocks="all",
                    start_percent=0.0, end_percent=1.0, condition=None):
    """Scale each chosen block's identity branch while the transformer runs (output = rho * input + branch,
    rho linear in depth from the first chosen block to the last); the options mean what the ComfyUI node's
    inputs mean. Returns a handle whose `remove()` (idempotent) undoes it and that is a context manager.

    A range is placed as ComfyUI places it for flow models, from the pipeline's FlowMatchEulerDiscreteScheduler
    (shifted by resolution: at each `set_timesteps`); given the transformer alone, only the whole run."""
    transformer = getattr(transformer_or_pipeline, "transformer", transformer_or_pipeline)
    transformer = getattr(transformer, "_orig_mod", transformer)
    double = getattr(transformer, "transformer_blocks", None)
    single = getattr(transformer, "single_transformer_blocks", None)
    chosen = residual_blocks(double, single, blocks, type(transformer).__name__)
    modules = [((double if kind == "double_block" else single)[index], STREAMS) for kind, index in chosen]
    scheduler = getattr(transformer_or_pipeline, "scheduler", None)
    config = getattr(scheduler, "config", {})
    flow = scheduler is not None and hasattr(scheduler, "time_shift") and not any(config.get(k) for k in RESHAPED)
    if not flow and (start_percent, end_percent) != (0.0, 1.0):
        where = type(scheduler).__name__ if scheduler is not None else "no scheduler"
        raise SkipTuningError(f"start_percent and end_percent: {NAME} places a range only on a flow-matching "
                              f"FlowMatchEulerDiscreteScheduler without reshaped sigmas (here: {where}); only the "
                              "whole run (0-1) can be tuned")
    handle = hook_residuals(transformer, modules, timestep_of, flow_sigma(scheduler) if flow else whole_run,
                            rho_first, rho_last, start_percent, end_percent, condition)
    if flow and config.get("use_dynamic_shifting"):
        follow_the_shift(handle, scheduler)
    return handle
