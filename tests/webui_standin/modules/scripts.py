"""Mirrors A1111 modules/scripts.py: Script, AlwaysVisible, scripts_data, and ScriptRunner's call order."""
import logging
from collections import namedtuple

AlwaysVisible = object()
ScriptClassData = namedtuple("ScriptClassData", ["script_class", "path", "basedir", "module"])
scripts_data = []


class Script:
    name = None
    args_from = None
    args_to = None
    alwayson = False
    is_txt2img = False
    is_img2img = False
    infotext_fields = None
    paste_field_names = None

    def title(self):
        raise NotImplementedError()

    def show(self, is_img2img):
        return True

    def ui(self, is_img2img):
        pass

    def process(self, p, *args):
        pass

    def process_before_every_sampling(self, p, *args, **kwargs):
        pass

    def postprocess(self, p, processed, *args):
        pass

    def elem_id(self, item_id):
        tabkind = "img2img" if self.is_img2img else "txt2img"
        title = self.title().lower().replace(" ", "_")
        return f"script_{tabkind}_{title}_{item_id}"


class ScriptRunner:
    """The always-on part of A1111's ScriptRunner: each hook gets `p.script_args[args_from:args_to]`."""

    def __init__(self, script_classes, is_img2img=False):
        self.alwayson_scripts = []
        self.inputs = []
        for script_class in script_classes:
            script = script_class()
            script.is_img2img, script.is_txt2img = is_img2img, not is_img2img
            if script.show(is_img2img) is AlwaysVisible:
                script.alwayson = True
                self.alwayson_scripts.append(script)

    def setup_ui(self):
        import gradio as gr

        with gr.Blocks() as self.blocks:
            for script in self.alwayson_scripts:
                controls = script.ui(script.is_img2img) or []
                script.args_from = len(self.inputs)
                self.inputs.extend(controls)
                script.args_to = len(self.inputs)
        return self.inputs

    # A1111 1.10.1 modules/scripts.py lines 828-842: an exception in `process` or
    # `process_before_every_sampling` is reported to the console and the generation goes on.
    def process(self, p):
        for script in self.alwayson_scripts:
            try:
                script.process(p, *p.script_args[script.args_from:script.args_to])
            except Exception:
                logging.getLogger("webui_standin").exception("Error running process: %s", script)

    def process_before_every_sampling(self, p, **kwargs):
        for script in self.alwayson_scripts:
            try:
                script.process_before_every_sampling(p, *p.script_args[script.args_from:script.args_to], **kwargs)
            except Exception:
                logging.getLogger("webui_standin").exception("Error running process_before_every_sampling: %s", script)

    def postprocess(self, p, processed):
        for script in self.alwayson_scripts:
            script.postprocess(p, processed, *p.script_args[script.args_from:script.args_to])
