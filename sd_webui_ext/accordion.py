"""The accordion a script's controls sit in, on every WebUI (A1111 >= 1.7 and Forge have InputAccordion, its own
on/off value; older ones and SD.Next get a plain accordion with an Enable checkbox), and the range sliders."""
import contextlib

import gradio as gr

from skip_tuning_core import HELP

try:
    from modules.ui_components import InputAccordion
except ImportError:
    InputAccordion = None


@contextlib.contextmanager
def accordion(script):
    """`with accordion(self) as enabled:` builds the script's accordion; `enabled` is its on/off control."""
    if InputAccordion is not None:
        with InputAccordion(False, label=script.title(), elem_id=script.elem_id("enabled")) as enabled:
            yield enabled
        return
    with gr.Accordion(script.title(), open=False):
        yield gr.Checkbox(False, label="Enable", elem_id=script.elem_id("enabled"))


def percent_sliders(script):
    """The start and end of the part of the run a script tunes, in one row."""
    with gr.Row():
        start = gr.Slider(0.0, 1.0, value=0.0, step=0.01, label="Start (percent of the run)",
                          info=HELP["start_percent"], elem_id=script.elem_id("start_percent"))
        end = gr.Slider(0.0, 1.0, value=1.0, step=0.01, label="End (percent of the run)",
                        info=HELP["end_percent"], elem_id=script.elem_id("end_percent"))
    return start, end
