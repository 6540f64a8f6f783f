"""Install Skip Tuning on a clone of a ComfyUI MODEL as an output-block patch."""
from ..skip_tuning_core import SkipPlan, SkipTuningError, make_output_block_patch, make_ranges

SUPPORTED = "SD1.x, SD2.x, SDXL and other checkpoints built on ComfyUI's UNetModel"


def output_block_count(model) -> int:
    """How many output blocks (skip connections) the model's U-Net has; refuses models without any."""
    base_model = getattr(model, "model", None)
    unet = getattr(base_model, "diffusion_model", None)
    blocks = getattr(unet, "output_blocks", None)
    if not hasattr(unet, "input_blocks") or blocks is None or len(blocks) == 0:
        name = type(base_model).__name__ if base_model is not None else type(model).__name__
        raise SkipTuningError(
            f"model: Skip Tuning needs a U-Net with skip connections ({SUPPORTED}); this model ({name}) has "
            f"none. Flux, SD3 and other transformer (DiT) models are not supported."
        )
    return len(blocks)


def skip_tuned(model, **settings):
    """A clone of `model` with its skips scaled per `settings` (make_ranges' keywords); `model` is untouched."""
    num_blocks = output_block_count(model)
    ranges = make_ranges(num_blocks, **settings)
    plan = SkipPlan(ranges, num_blocks, model.get_model_object("model_sampling").percent_to_sigma)
    patched = model.clone()
    if not plan.is_identity:
        patched.set_model_output_block_patch(make_output_block_patch(plan))
    return patched
