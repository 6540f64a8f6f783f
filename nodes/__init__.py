"""The ComfyUI node pack: the Skip Tuning nodes, and the lab nodes where this ComfyUI has what they need."""
import logging

from .residual_tuning import ResidualTuning
from .skip_tuning import SkipTuning
from .skip_tuning_advanced import SkipTuningAdvanced
from .skip_tuning_sweep import SkipTuningSweep

NODE_CLASS_MAPPINGS = {
    "SkipTuning": SkipTuning,
    "SkipTuningAdvanced": SkipTuningAdvanced,
    "SkipTuningSweep": SkipTuningSweep,
    "ResidualTuningDiT": ResidualTuning,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "SkipTuning": "Skip Tuning",
    "SkipTuningAdvanced": "Skip Tuning (Advanced)",
    "SkipTuningSweep": "Skip Tuning Sweep",
    "ResidualTuningDiT": "Residual Tuning (DiT, exp.)",
}

try:
    from . import lab
except ImportError as error:
    logging.info("Skip Tuning: lab nodes left out: %s", error)
else:
    NODE_CLASS_MAPPINGS.update(lab.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(lab.NODE_DISPLAY_NAME_MAPPINGS)
