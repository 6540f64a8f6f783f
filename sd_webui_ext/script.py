"""The WebUI Script: the "Skip Tuning" accordion in txt2img and img2img, its settings, tab and X/Y/Z axes.

Follows A1111's `modules/scripts.py` Script API (AlwaysVisible, `process`, and
`process_before_every_sampling` in A1111 >= 1.10 and Forge) and Forge's built-in FreeU for patching. Which
host runs it is read from the model each generation hands it: a diffusers pipeline (SD.Next), a Forge
model, or A1111's ldm/sgm model.
"""
import gradio as gr

from modules import script_callbacks, scripts

from skip_tuning_core import HELP, RHO_MAX, SkipTuningError

from .a1111 import fail_when_sampling, follow_the_sampled_unet, install_for_sampling
from .accordion import accordion, percent_sliders
from .forge import is_forge, patch_forge_unet
from .pipelines import install_for_pipeline, is_pipeline, remove_pipeline_hooks
from .params import (ARG_NAMES, INFOTEXT_KEY, SkipParams, expand_infotext, infotext_fields, params_from_args,
                     paste_key, with_xyz_overrides)
from .settings_ui import default_params, on_ui_settings, on_ui_tabs, tunes_this_pass
from .xyz import register_xyz_axes

PARAMS = "skip_tuning_params"  # this generation's settings, parsed once in `process`, on `p`


class SkipTuningScript(scripts.Script):
    """Scales the U-Net's skip connections while sampling (Ma et al., ICML 2024).

    `attach_pipeline` tunes a diffusers pipeline (`skip_tuning_diffusers.attach`); the entry point
    (scripts/skip_tuning.py) sets it, since the two host packages never import each other.
    """

    attach_pipeline = None

    def title(self):
        return "Skip Tuning"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        defaults = default_params()
        with accordion(self) as enabled:
            with gr.Row():
                rho_top = gr.Slider(0.0, RHO_MAX, value=defaults.rho_top, step=0.01, label="rho_top",
                                    info=HELP["rho_top"], elem_id=self.elem_id("rho_top"))
                rho_bottom = gr.Slider(0.0, RHO_MAX, value=defaults.rho_bottom, step=0.01, label="rho_bottom",
                                       info=HELP["rho_bottom"], elem_id=self.elem_id("rho_bottom"))
            start, end = percent_sliders(self)
            block_rhos = gr.Textbox("", label="Per-block rho (optional)", info=HELP["block_rhos"],
                                    elem_id=self.elem_id("block_rhos"))
        controls = [enabled, rho_top, rho_bottom, start, end, block_rhos]
        self.infotext_fields = infotext_fields(controls, SkipParams)
        self.paste_field_names = [paste_key(name) for name in ARG_NAMES]
        return controls

    def process(self, p, *args):
        """Parse this generation's settings once (they stay on `p` for the later hooks) and, outside Forge,
        hook the model for the sampling to come."""
        vars(p).pop(PARAMS, None)
        try:
            params = with_xyz_overrides(params_from_args(args, default_params(enabled=False)), p)
        except SkipTuningError as error:
            fail_when_sampling(p, error)
            raise
        if not params.enabled:
            return
        setattr(p, PARAMS, params)
        p.extra_generation_params[INFOTEXT_KEY] = params.infotext()
        if is_pipeline(p.sd_model):
            applied = install_for_pipeline(p, self.title(), lambda: self.attach_pipeline(
                p.sd_model, params.rho_top, params.rho_bottom, params.start_percent, params.end_percent,
                params.block_rhos, condition=lambda: tunes_this_pass(p)))
        else:
            applied = is_forge(p) or install_for_sampling(p, params, lambda: tunes_this_pass(p))
        if not applied:  # a model without skips: the infotext must not claim it
            p.extra_generation_params.pop(INFOTEXT_KEY, None)

    def postprocess(self, p, processed, *args):
        remove_pipeline_hooks(p)

    def process_before_every_sampling(self, p, *args, **kwargs):
        """Forge (and A1111 >= 1.10) call this before each sampling pass; only Forge patches here."""
        params = getattr(p, PARAMS, None)
        if params is not None and is_forge(p) and tunes_this_pass(p) and not patch_forge_unet(p, params):
            if not getattr(p, "is_hr_pass", False):  # nothing was tuned: the infotext must not claim it
                p.extra_generation_params.pop(INFOTEXT_KEY, None)


def follow_the_sampled_model(denoiser_params) -> None:
    """An `on_cfg_denoiser` callback. The refiner (and in A1111 a hires checkpoint) takes over as another model
    mid-generation, and no script hook runs then: the WebUIs call this at every denoiser step after the switch,
    before the U-Net (A1111 1.10.1 and Forge main modules/sd_samplers_cfg_denoiser.py forward: apply_refiner,
    then cfg_denoiser_callback, then the sampling reads `shared.sd_model.forge_objects.unet`; reForge and
    Forge Classic the same, 128-173 and 112-124). Forge's refiner is a freshly loaded model whose
    `forge_objects.unet` nothing has tuned yet (bug: its steps were untuned)."""
    p = getattr(getattr(denoiser_params, "denoiser", None), "p", None)
    if p is None:
        return
    if not is_forge(p):
        follow_the_sampled_unet(p)
    elif getattr(p, PARAMS, None) is not None and tunes_this_pass(p):
        patch_forge_unet(p, getattr(p, PARAMS))


script_callbacks.on_ui_settings(on_ui_settings)
script_callbacks.on_ui_tabs(on_ui_tabs)
script_callbacks.on_before_ui(register_xyz_axes)
# Also now: in API-only mode (`--nowebui`) the WebUIs build every script's UI, where X/Y/Z takes its list of
# axes, before any on_before_ui callback runs (A1111 1.10.1 webui.py 26-37: create_api, then
# before_ui_callback; modules/api/api.py 255-268: ui.create_ui()), so axes added only there are missing and
# an index past the list fails the request. X/Y/Z is loaded before this extension (the WebUI's scripts/
# folder, or Forge Classic's built-in extension, come first), so it is found here.
register_xyz_axes()
script_callbacks.on_infotext_pasted(expand_infotext)
if hasattr(script_callbacks, "on_cfg_denoiser"):
    script_callbacks.on_cfg_denoiser(follow_the_sampled_model)
if hasattr(script_callbacks, "on_after_process"):  # SD.Next runs it in process_images' `finally`
    script_callbacks.on_after_process(remove_pipeline_hooks)
