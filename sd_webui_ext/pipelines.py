"""SD.Next: `p.sd_model` is a diffusers pipeline, tuned through the diffusers adapter the entry point hands in.

SD.Next has no `p.sample` to wrap: its pipeline call runs inside `process_images_inner`
(modules/processing.py 449-587, pipeline call in modules/processing_diffusers.py process_base). So the hooks
go on in the script's `process` and come off in `postprocess` and, should the generation fail or be
interrupted, in the after-process callback that SD.Next's `process_images` runs in its `finally`.
"""
from skip_tuning_core import SkipTuningError

from .params import SkipParams, report_unsupported

HANDLE = "skip_tuning_handle"


def is_pipeline(model) -> bool:
    """A diffusers pipeline (every one has `components`), not an ldm/sgm model or a Forge one."""
    return hasattr(model, "components") and not hasattr(model, "model")


def install_for_pipeline(p, params: SkipParams, attach_pipeline, tunes_this_pass) -> bool:
    """Hook the pipeline's U-Net for this generation; the handle lives on `p` alone."""
    remove_pipeline_hooks(p)  # process() again on the same p (Loopback-style scripts): never twice
    try:
        handle = attach_pipeline(p.sd_model, params.rho_top, params.rho_bottom, params.start_percent,
                                 params.end_percent, params.block_rhos, condition=tunes_this_pass)
    except SkipTuningError:
        report_unsupported(p, getattr(p.sd_model, "unet", p.sd_model))
        return False
    setattr(p, HANDLE, handle)
    return True


def remove_pipeline_hooks(p, *args) -> None:
    """Take this generation's hooks off (idempotent); also an after-process callback (`callback(p)`)."""
    handle = vars(p).pop(HANDLE, None)
    if handle is not None:
        handle.remove()
