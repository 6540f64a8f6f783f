"""Residual tuning for DiTs (experimental): each transformer block's output becomes rho_l * x_in + branch.

The blog behind Skip Tuning suggests that a DiT's identity branches play the role of a U-Net's skips; the lab
measured it on its small Flux-class DiT before this shipped (README, "Residual tuning on a DiT"). rho_l is
linear in depth from the first chosen block to the last (Skip Tuning's ramp), over the part of the run the
range covers, installed on a clone through the `patches_replace["dit"]` double/single block replacements that
Flux-family models look up. Host-free: it only calls the patcher's own methods.
"""
from .schedule import SkipPlan, SkipTuningError, check_percent, check_rho, make_ranges

NAME = "Residual Tuning (DiT, experimental)"
BLOCKS = ("all", "double", "single")
DEFAULT_RHO = 0.95  # the setting most often confirmed on the lab DiT ("all 0.95")


def residual_blocks(dit, blocks: str) -> list:
    """The (kind, index) keys of the chosen blocks, first to last: double-stream blocks, then single-stream."""
    if blocks not in BLOCKS:
        raise SkipTuningError(f"blocks must be one of {', '.join(BLOCKS)}, got {blocks!r}")
    if not (hasattr(dit, "double_blocks") and hasattr(dit, "single_blocks")):
        raise SkipTuningError(f"{NAME} needs a Flux-family transformer (double- and single-stream blocks: Flux, "
                              f"Chroma); this model ({type(dit).__name__}) has none. For U-Nets and HunyuanDiT "
                              "use Skip Tuning.")
    names = [("double_block", i) for i in range(len(dit.double_blocks))] + [
        ("single_block", i) for i in range(len(dit.single_blocks))]
    chosen = [name for name in names if blocks == "all" or name[0] == f"{blocks}_block"]
    if not chosen:
        raise SkipTuningError(f"blocks={blocks!r}: this model has no {blocks}-stream blocks")
    return chosen


def scaled_identity(plan: SkipPlan, position: int):
    """A dit block replacement: rho * x_in + branch for each stream the block outputs, rho from `plan` at this
    call's noise level (the block unchanged outside the ranges)."""
    def replace(args, extra):
        sigmas = args.get("transformer_options", {}).get("sigmas")
        rhos = None if sigmas is None else plan.rhos_at(float(sigmas.max()))
        rho = 1.0 if rhos is None else rhos[position]
        if rho == 1.0:
            return extra["original_block"](args)
        inputs = {name: args[name] for name in ("img", "txt") if name in args}
        # Flux's blocks add their branches in place (`img +=`): hand them copies, keep the inputs.
        out = extra["original_block"]({**args, **{name: x.clone() for name, x in inputs.items()}})
        return {name: y - (1.0 - rho) * inputs[name] for name, y in out.items()}
    return replace


def residual_tuned(patcher, rho_first=DEFAULT_RHO, rho_last=DEFAULT_RHO, blocks="all", start_percent=0.0,
                   end_percent=1.0):
    """A clone of a Flux-family model patcher whose blocks scale their identity branch. The range is placed with
    the model_sampling of the model given (put the node after any ModelSampling node)."""
    rho_first, rho_last = check_rho(rho_first, "rho_first"), check_rho(rho_last, "rho_last")
    chosen = residual_blocks(patcher.get_model_object("diffusion_model"), blocks)
    ranges = make_ranges(len(chosen), rho_top=rho_last, rho_bottom=rho_first,
                         start_percent=check_percent(start_percent, "start_percent"),
                         end_percent=check_percent(end_percent, "end_percent"))
    plan = SkipPlan(ranges, len(chosen), patcher.get_model_object("model_sampling").percent_to_sigma)
    tuned = patcher.clone()
    for position, (kind, index) in enumerate(chosen):
        tuned.set_model_patch_replace(scaled_identity(plan, position), "dit", kind, index)
    return tuned
