"""The WebUI Script "Residual Tuning (DiT, experimental)": Skip Tuning's idea on the identity branches of a
Flux-family transformer, in Forge (its own Flux and Chroma) and SD.Next (diffusers' Flux pipelines). The same
Script API as the Skip Tuning accordion (script.py); its settings are ResidualParams."""
import gradio as gr

from modules import script_callbacks, scripts

from skip_tuning_core import RHO_MAX, SkipTuningError
from skip_tuning_core.residual import BLOCKS, NAME, residual_blocks
from skip_tuning_core.texts import RESIDUAL_HELP

from .a1111 import fail_when_sampling
from .accordion import accordion, percent_sliders
from .forge import attach_residual, is_forge
from .params import ResidualParams, arg_names, infotext_expander, infotext_fields, params_from_args, paste_key, tell
from .pipelines import install_for_pipeline, is_pipeline, remove_pipeline_hooks
from .sampling import wrap_sample


def install_for_forge(p, params: ResidualParams) -> None:
    """Forge: the blocks hooked while this `p`'s own `sample` runs (its hires pass included)."""
    def sample_with_residual_tuning(sample, *args, **kwargs):
        try:
            handle = attach_residual(p.sd_model.forge_objects.unet, params)
        except SkipTuningError as error:
            tell(p, f"{NAME}: {error} This image was generated without it.")
            # The infotext is written after sampling: it must not claim what was not done.
            p.extra_generation_params.pop(ResidualParams.KEY, None)
            return sample(*args, **kwargs)
        try:
            return sample(*args, **kwargs)
        finally:
            handle.remove()

    wrap_sample(p, ResidualParams.KEY, sample_with_residual_tuning)


def report_no_transformer(p) -> None:
    """AUTOMATIC1111 runs no Flux-family model: say what the model is."""
    model = getattr(getattr(p.sd_model, "model", None), "diffusion_model", p.sd_model)
    try:
        residual_blocks(getattr(model, "double_blocks", None), getattr(model, "single_blocks", None), "all",
                        type(model).__name__)
    except SkipTuningError as error:
        tell(p, f"{NAME}: {error} This image was generated without it.")


class ResidualTuningScript(scripts.Script):
    """Scales each transformer block's identity branch while sampling (README, "Residual tuning on a DiT").

    `attach_pipeline` tunes a diffusers pipeline (`skip_tuning_diffusers.attach_residual`); the entry point
    (scripts/residual_tuning.py) sets it.
    """

    attach_pipeline = None

    def title(self):
        return NAME

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        defaults = ResidualParams()
        with accordion(self) as enabled:
            with gr.Row():
                rho_first, rho_last = (
                    gr.Slider(0.0, RHO_MAX, value=getattr(defaults, name), step=0.01, label=name,
                              info=RESIDUAL_HELP[name], elem_id=self.elem_id(name)) for name in ("rho_first", "rho_last"))
            blocks = gr.Radio(list(BLOCKS), value=defaults.blocks, label="blocks", info=RESIDUAL_HELP["blocks"],
                              elem_id=self.elem_id("blocks"))
            start, end = percent_sliders(self)
        controls = [enabled, rho_first, rho_last, blocks, start, end]
        self.infotext_fields = infotext_fields(controls, ResidualParams)
        self.paste_field_names = [paste_key(name, ResidualParams) for name in arg_names(ResidualParams)]
        return controls

    def process(self, p, *args):
        try:
            params = params_from_args(args, ResidualParams())
        except SkipTuningError as error:
            fail_when_sampling(p, error)
            raise
        if not params.enabled:
            return
        if is_pipeline(p.sd_model):
            applied = install_for_pipeline(p, NAME, lambda: self.attach_pipeline(
                p.sd_model, params.rho_first, params.rho_last, params.blocks, params.start_percent,
                params.end_percent))
        elif is_forge(p):
            applied = True  # until the model that samples says otherwise (install_for_forge)
            install_for_forge(p, params)
        else:
            applied = False
            report_no_transformer(p)
        if applied:
            p.extra_generation_params[ResidualParams.KEY] = params.infotext()

    def postprocess(self, p, processed, *args):
        remove_pipeline_hooks(p)


script_callbacks.on_infotext_pasted(infotext_expander(ResidualParams))
