"""The ComfyUI node pack: every node's spec, exported through the API this ComfyUI has."""
from . import lab, skip_tuning, skip_tuning_advanced, skip_tuning_sweep
from .comfy_api_bridge import exports

NODE_SPECS = (skip_tuning.NODE, skip_tuning_advanced.NODE, skip_tuning_sweep.NODE, lab.LOADER, lab.PROMPT)
EXPORTS = exports(NODE_SPECS)
