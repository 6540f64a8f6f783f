"""The extension's own places in the WebUI: a Settings section and a "Skip Tuning" tab."""
import gradio as gr

from modules import shared

from skip_tuning_core import DEFAULT_RHO_BOTTOM, DEFAULT_RHO_TOP, RHO_MAX, SkipTuningError
from skip_tuning_core.picture import draw_settings
from skip_tuning_core.presets import load_measurements, presets_markdown

from .params import SkipParams

SECTION = ("skip_tuning", "Skip Tuning")
HIRES_OPTION = "skip_tuning_in_hires_pass"
DEFAULT_TOP = "skip_tuning_default_rho_top"
DEFAULT_BOTTOM = "skip_tuning_default_rho_bottom"

ABOUT = """Skip Tuning (Ma et al., ICML 2024) multiplies the U-Net's skip connections while sampling: the deepest
by **rho_bottom**, the one nearest the input by **rho_top**, the rest evenly in between. It can be limited to
part of the denoising run (start/end). The paper uses rho_top 1 and rho_bottom 0.5-0.9 for few-step ODE
samplers; stochastic samplers may want values near or above 1. **The effect depends on the sampler**:
compare on your own seeds with an X/Y/Z plot ("[Skip Tuning] rho_bottom" axis)."""


def default_params(enabled=False) -> SkipParams:
    """The accordion's starting values, from Settings."""
    return SkipParams(enabled=enabled, rho_top=float(getattr(shared.opts, DEFAULT_TOP, DEFAULT_RHO_TOP)),
                      rho_bottom=float(getattr(shared.opts, DEFAULT_BOTTOM, DEFAULT_RHO_BOTTOM)))


def tunes_this_pass(p) -> bool:
    """Whether the pass `p` is sampling now is tuned: every pass, unless Settings leave the hires pass out."""
    return getattr(shared.opts, HIRES_OPTION, True) or not getattr(p, "is_hr_pass", False)


def on_ui_settings():
    slider = {"minimum": 0.0, "maximum": RHO_MAX, "step": 0.01}
    shared.opts.add_option(DEFAULT_TOP, shared.OptionInfo(DEFAULT_RHO_TOP, "Default rho_top", gr.Slider, slider, section=SECTION))
    shared.opts.add_option(DEFAULT_BOTTOM, shared.OptionInfo(DEFAULT_RHO_BOTTOM, "Default rho_bottom", gr.Slider, slider,
                                                             section=SECTION))
    shared.opts.add_option(HIRES_OPTION, shared.OptionInfo(
        True, "Apply in the hires pass too (off: only the first pass is tuned)", gr.Checkbox, {}, section=SECTION))


def preview(num_blocks, rho_top, rho_bottom, start, end, block_rhos):
    """The tab's picture; on bad input the previous picture stays and the message says why."""
    try:
        return draw_settings(int(num_blocks), rho_top, rho_bottom, start, end, block_rhos), ""
    except SkipTuningError as error:
        return gr.update(), f"**{error}**"


def build_tab():
    defaults = default_params()
    with gr.Blocks(analytics_enabled=False) as tab:
        gr.Markdown(ABOUT)
        with gr.Row():
            with gr.Column():
                num_blocks = gr.Radio([12, 9], value=12, label="Output blocks (SD1.x/SD2.x: 12, SDXL: 9)")
                rho_top = gr.Slider(0.0, RHO_MAX, value=defaults.rho_top, step=0.01, label="rho_top")
                rho_bottom = gr.Slider(0.0, RHO_MAX, value=defaults.rho_bottom, step=0.01, label="rho_bottom")
                start = gr.Slider(0.0, 1.0, value=0.0, step=0.01, label="Start (percent of the run)")
                end = gr.Slider(0.0, 1.0, value=1.0, step=0.01, label="End (percent of the run)")
                block_rhos = gr.Textbox("", label="Per-block rho (optional, deepest first)")
            with gr.Column():
                picture = gr.Image(value=draw_settings(12, defaults.rho_top, defaults.rho_bottom),
                                   type="pil", label="rho per output block, and where in the run it applies")
                message = gr.Markdown("")
        gr.Markdown("### Presets\n" + presets_markdown(load_measurements()))
        inputs = [num_blocks, rho_top, rho_bottom, start, end, block_rhos]
        for control in inputs:
            control.change(preview, inputs=inputs, outputs=[picture, message])
    return tab


def on_ui_tabs():
    return [(build_tab(), "Skip Tuning", "skip_tuning")]
