"""The file the WebUI discovers; the extension lives in the sd_webui_ext package beside it.

Only this file's own class is collected (the WebUI registers every Script subclass in its namespace); it
hands the WebUI script the diffusers adapter, with which SD.Next's pipelines are tuned.
"""
import skip_tuning_diffusers
from sd_webui_ext import script


class SkipTuningScript(script.SkipTuningScript):
    attach_pipeline = staticmethod(skip_tuning_diffusers.attach)
