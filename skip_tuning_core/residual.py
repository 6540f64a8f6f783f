"""Residual tuning for DiTs (experimental): each transformer block's output becomes rho_l * x_in + branch.

The blog behind Skip Tuning suggests that a DiT's identity branches play the role of a U-Net's skips; the lab
measured it on its small Flux-class DiT before this shipped (README, "Residual tuning on a DiT"). rho_l is
linear in depth from the first chosen block to the last (Skip Tuning's ramp), over the part of the run the
range covers. Two ways in, one recipe: on a model patcher through the `patches_replace["dit"]` double/single
block replacements Flux-family models look up (ComfyUI), and with `hook_residuals` on the block modules of a
host without them (diffusers, Forge). Host-free: it only calls the patcher's own methods and torch's.
"""
from .hooks import ENTRIES, SkipHandle, call_argument, read_timestep_then_call, tune
from .patcher import RESIDUAL_SCALES, RESIDUAL_TUNERS, SkipTuner, gated, install_gate
from .schedule import SkipPlan, SkipTuningError, check_percent, check_rho, make_ranges

NAME = "Residual Tuning (DiT, experimental)"
BLOCKS = ("all", "double", "single")
DEFAULT_RHO = 0.95  # the setting most often confirmed on the lab DiT ("all 0.95")


def identity_scaled(out, x_in, rho):
    """A block's output with its identity branch scaled: rho * x_in + branch, the branch being out - x_in."""
    return out - (1.0 - rho) * x_in


def check_blocks(blocks) -> str:
    if blocks not in BLOCKS:
        raise SkipTuningError(f"blocks must be one of {', '.join(BLOCKS)}, got {blocks!r}")
    return blocks


def residual_blocks(double, single, blocks: str, model_name: str) -> list:
    """The (kind, index) keys of the chosen blocks, first to last: double-stream blocks, then single-stream.
    `double` and `single` are the model's two block lists (None where it has no such list)."""
    check_blocks(blocks)
    if double is None or single is None:
        raise SkipTuningError(f"this model ({model_name}) has no double- and single-stream blocks: residual "
                              "tuning needs a Flux-family transformer (Flux, Chroma). For U-Nets and HunyuanDiT "
                              "use Skip Tuning.")
    names = [("double_block", i) for i in range(len(double))] + [("single_block", i) for i in range(len(single))]
    chosen = [name for name in names if blocks == "all" or name[0] == f"{blocks}_block"]
    if not chosen:
        raise SkipTuningError(f"blocks={blocks!r}: this model has no {blocks}-stream blocks")
    return chosen


def residual_ranges(count: int, rho_first, rho_last, start_percent, end_percent) -> list:
    """The one range of a residual tuning over `count` chosen blocks, each value checked against its field."""
    return make_ranges(count, rho_top=check_rho(rho_last, "rho_last"), rho_bottom=check_rho(rho_first, "rho_first"),
                       start_percent=check_percent(start_percent, "start_percent"),
                       end_percent=check_percent(end_percent, "end_percent"))


def scaled_identity(tuner: int, position: int, inner=None):
    """A dit block replacement: rho * x_in + branch for each stream the block outputs, rho this call's factor of
    residual tuner `tuner` for the block at `position` (1 outside its ranges), a tensor the gate around the model
    call handed over, so that a compiled model's graph never depends on the step. `inner`, a replacement
    another node set for the block, runs in the block's place."""
    run = inner or (lambda args, extra: extra["original_block"](args))

    def replace(args, extra):
        scales = args.get("transformer_options", {}).get(RESIDUAL_SCALES)
        if scales is None:  # a call that did not go through the gate (another host path): leave it
            return run(args, extra)
        rho = scales[tuner][position]
        inputs = {name: args[name] for name in ("img", "txt") if name in args}
        # ComfyUI's Flux blocks add their branches in place (`img +=`): hand them copies, keep the inputs.
        out = run({**args, **{name: x.clone() for name, x in inputs.items()}}, extra)
        return {name: identity_scaled(y, inputs[name], rho.to(y.dtype)) for name, y in out.items()}
    return replace


def residual_tuned(patcher, rho_first=DEFAULT_RHO, rho_last=DEFAULT_RHO, blocks="all", start_percent=0.0,
                   end_percent=1.0):
    """A clone of a Flux-family model patcher whose blocks scale their identity branch. The range is placed with
    the model_sampling of the model sampled, read once per call by the gate Skip Tuning uses (patcher.py).
    Applied twice, or over another node's block replacement, the replacements nest: each one's change adds
    to the other's."""
    dit = patcher.get_model_object("diffusion_model")
    chosen = residual_blocks(getattr(dit, "double_blocks", None), getattr(dit, "single_blocks", None), blocks,
                             type(dit).__name__)
    tuner = SkipTuner(residual_ranges(len(chosen), rho_first, rho_last, start_percent, end_percent), len(chosen))
    tuned = patcher.clone()
    gate = not gated(tuned)
    options = tuned.model_options.setdefault("transformer_options", {})
    index = len(options.get(RESIDUAL_TUNERS, ()))
    options[RESIDUAL_TUNERS] = tuple(options.get(RESIDUAL_TUNERS, ())) + (tuner,)
    present = options.get("patches_replace", {}).get("dit", {})
    for position, (kind, block) in enumerate(chosen):
        tuned.set_model_patch_replace(scaled_identity(index, position, present.get((kind, block))), "dit", kind,
                                      block)
    if gate:
        install_gate(tuned)
    return tuned


def scale_identity_then_return(module, call, args, kwargs):
    """A tuned block's call: its outputs with each handle's identity branch scaled. `streams` names, in the
    order of a tuple output, the input ((name, reader)) each output adds its branch to; a block that returns
    one tensor adds it to the last one named."""
    entries = [entry for entry in getattr(module, ENTRIES) if entry[0].factors is not None]
    if not entries:
        return call(*args, **kwargs)
    # Copies taken before the call: Forge Neo's blocks, ported from ComfyUI's, add their branches in place
    # (`img +=`), which would leave the input equal to the output.
    inputs = {name: value.clone() for name, read in entries[0][2] if (value := read(args, kwargs)) is not None}
    out = call(*args, **kwargs)
    for handle, position, streams in entries:
        rho = handle.factors[position]
        single = not isinstance(out, tuple)
        pairs = zip((out,) if single else out, streams[-1:] if single else streams)
        scaled = tuple(identity_scaled(y, inputs[name], rho.to(y.dtype)) for y, (name, _) in pairs)
        out = scaled[0] if single else scaled
    return out


def hook_residuals(transformer, blocks, read_timestep, percent_to_value, rho_first=DEFAULT_RHO,
                   rho_last=DEFAULT_RHO, start_percent=0.0, end_percent=1.0, condition=None) -> SkipHandle:
    """Residual tuning on the modules of a host without block replacements, until the handle's `remove()`.

    `blocks`: (module, streams) of the chosen blocks, first to last; streams name, in the order of a tuple
    output, the input ((keyword, position)) each output adds its branch to; each call keeps a copy of the
    inputs it scales (a block may add its branches in place).
    The noise level is read once per `transformer` call (`read_timestep(args, kwargs)`, the largest of the
    batch) and the range placed with `percent_to_value`, as Skip Tuning's module hooks do (hooks.py): the same
    compiled graph for every rho and range. Several handles on one block add their changes."""
    ranges = residual_ranges(len(blocks), rho_first, rho_last, start_percent, end_percent)
    handle = SkipHandle(SkipPlan(ranges, len(blocks), percent_to_value), read_timestep, condition)
    tune(transformer, handle, handle, read_timestep_then_call)
    for position, (block, streams) in enumerate(blocks):
        readers = tuple((name, call_argument(name, index)) for name, index in streams)
        tune(block, handle, (handle, position, readers), scale_identity_then_return)
    return handle
