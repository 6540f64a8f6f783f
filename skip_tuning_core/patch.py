"""Skip Tuning as an output-block patch for hosts with ComfyUI's patch contract (ComfyUI, Forge).

Such hosts call `h, hsp = patch(h, hsp, transformer_options)` before `output_blocks[j]` concatenates
the skip `hsp` to `h`, with `transformer_options["block"] == ("output", j)` and the current noise
levels in `transformer_options["sigmas"]`.
"""
from .schedule import SigmaGate, SkipPlan


def make_output_block_patch(plan: SkipPlan):
    """A patch that returns `hsp * rho_j` inside the plan's ranges and `hsp` itself everywhere else."""
    gate = SigmaGate(plan)

    def output_block_patch(h, hsp, transformer_options):
        sigmas = transformer_options.get("sigmas")
        if sigmas is None:
            return h, hsp
        rhos = gate.rhos_for(sigmas)
        if rhos is None:
            return h, hsp
        rho = rhos[transformer_options["block"][1]]
        if rho == 1.0:
            return h, hsp
        # A new tensor: the host (ControlNet, other patches) may still hold the skip it passed in.
        return h, hsp * rho

    output_block_patch.skip_tuning_plan = plan
    return output_block_patch
