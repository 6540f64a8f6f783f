"""SD.Next: `p.sd_model` is a diffusers pipeline, tuned through the diffusers adapter the entry point hands in.

SD.Next has no `p.sample` to wrap: its pipeline call runs inside `process_images_inner`
(modules/processing.py 449-587, pipeline call in modules/processing_diffusers.py process_base). So the hooks
go on in the script's `process` and come off in `postprocess` and, should the generation fail or be
interrupted, in the after-process callback that SD.Next's `process_images` runs in its `finally`.
"""
from skip_tuning_core import SkipTuningError

from .params import tell

HANDLES = "skip_tuning_handles"  # on `p`: this generation's handle of each script, by its title


def is_pipeline(model) -> bool:
    """A diffusers pipeline (every one has `components`), not an ldm/sgm model or a Forge one."""
    return hasattr(model, "components") and not hasattr(model, "model")


def install_for_pipeline(p, title: str, attach) -> bool:
    """Hook the pipeline for this generation with `attach()`; the handle lives on `p` alone. A model the
    adapter refuses is reported where the person sees it, and the generation goes on."""
    handles = vars(p).setdefault(HANDLES, {})
    earlier = handles.pop(title, None)  # process() again on the same p (Loopback-style scripts): never twice
    if earlier is not None:
        earlier.remove()
    try:
        handles[title] = attach()
    except SkipTuningError as error:
        tell(p, f"{title}: {error} This image was generated without it.")
        return False
    return True


def remove_pipeline_hooks(p, *args) -> None:
    """Take this generation's hooks off (idempotent); also an after-process callback (`callback(p)`)."""
    for handle in vars(p).pop(HANDLES, {}).values():
        handle.remove()
