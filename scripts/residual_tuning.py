"""The file the WebUI discovers for Residual Tuning (DiT, experimental); it lives in sd_webui_ext beside Skip
Tuning. As in scripts/skip_tuning.py, only this file's own class is collected, and it hands the script the
diffusers adapter, with which SD.Next's Flux pipelines are tuned."""
import skip_tuning_diffusers
from sd_webui_ext import residual_script


class ResidualTuningScript(residual_script.ResidualTuningScript):
    attach_pipeline = staticmethod(skip_tuning_diffusers.attach_residual)
