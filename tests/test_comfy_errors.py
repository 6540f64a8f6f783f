"""Bad input gets a clear error that names the field, from the node, never from deep inside torch."""
import math

import pytest
import torch

from test_comfy_patch import run_node
from tiny_models import tiny_model

SIMPLE = dict(rho_top=1.0, rho_bottom=0.8, start_percent=0.0, end_percent=1.0)
ADVANCED = dict(rho_top=1.0, rho_bottom=0.8, block_rhos="", ranges="0.0-1.0")
SWEEP = dict(sweep="rho_bottom", values="1.0, 0.8", **SIMPLE)

CASES = [
    ("SkipTuning", dict(SIMPLE, rho_bottom=math.nan), "rho_bottom", "finite"),
    ("SkipTuning", dict(SIMPLE, rho_bottom=math.inf), "rho_bottom", "finite"),
    ("SkipTuning", dict(SIMPLE, rho_top=-0.1), "rho_top", "from 0 to 3"),
    ("SkipTuning", dict(SIMPLE, rho_top=3.5), "rho_top", "from 0 to 3"),
    ("SkipTuning", dict(SIMPLE, rho_bottom="0.8"), "rho_bottom", "number"),
    ("SkipTuning", dict(SIMPLE, start_percent=0.8, end_percent=0.2), "start_percent", "after end_percent"),
    ("SkipTuning", dict(SIMPLE, start_percent=-0.1), "start_percent", "from 0 to 1"),
    ("SkipTuning", dict(SIMPLE, end_percent=1.5), "end_percent", "from 0 to 1"),
    ("SkipTuning", dict(SIMPLE, end_percent=math.nan), "end_percent", "from 0 to 1"),
    ("SkipTuningAdvanced", dict(ADVANCED, block_rhos="1, 0.9, 0.8"), "block_rhos", "6 output blocks"),
    ("SkipTuningAdvanced", dict(ADVANCED, block_rhos="1, 0.9, x, 1, 1, 1"), "block_rhos", "'x' is not a number"),
    ("SkipTuningAdvanced", dict(ADVANCED, block_rhos="1, 1, 1, 1, 1, nan"), "block_rhos, value 6 (output block 5)",
     "finite"),
    ("SkipTuningAdvanced", dict(ADVANCED, block_rhos="1,0 1,0 1,0 0,9 0,9 0,8"), "block_rhos", "with a point"),
    ("SkipTuningAdvanced", dict(ADVANCED, block_rhos="__import__('os')"), "block_rhos", "not a number"),
    ("SkipTuningAdvanced", dict(ADVANCED, ranges="0.5 to 1"), "ranges line 1", "start-end"),
    ("SkipTuningAdvanced", dict(ADVANCED, ranges="0.0-0.5\n0.7-0.2"), "ranges line 2", "after end_percent"),
    ("SkipTuningAdvanced", dict(ADVANCED, ranges="0.0-1.2"), "ranges line 1", "from 0 to 1"),
    ("SkipTuningAdvanced", dict(ADVANCED, ranges="0-1: 1, 0.9, 0.8"), "ranges line 1", "6 output blocks"),
    ("SkipTuningAdvanced", dict(ADVANCED, ranges="0-1: 1, -2"), "ranges line 1 rho_bottom", "from 0 to 3"),
    ("SkipTuningAdvanced", dict(ADVANCED, ranges="# only a comment\n"), "ranges", "empty"),
    # A European decimal comma is refused with the fix, never read as another range or other values.
    ("SkipTuningAdvanced", dict(ADVANCED, ranges="0,2-0,8"), "ranges line 1", "write decimals with a point"),
    ("SkipTuningAdvanced", dict(ADVANCED, ranges="0.2-0.8: 1,0 0,8"), "ranges line 1", "with a point"),
    ("SkipTuningAdvanced", dict(ADVANCED, ranges="0.0-0.2\n0.2-0.8: 0,8"), "ranges line 2 rho_bottom", "with a point"),
    ("SkipTuningAdvanced", dict(ADVANCED, ranges="0-1: 1, 1, 9, 1, 1, 1"), "ranges line 1, value 3 (output block 2)",
     "from 0 to 3"),
    ("SkipTuningSweep", dict(SWEEP, values=""), "values", "empty"),
    ("SkipTuningSweep", dict(SWEEP, values="1.0, 0.8, abc"), "values", "'abc' is not a number"),
    ("SkipTuningSweep", dict(SWEEP, values="1.0, inf"), "values[1]", "finite"),
    ("SkipTuningSweep", dict(SWEEP, values="1,0, 0,9, 0,8"), "values", "with a point"),
    ("SkipTuningSweep", dict(SWEEP, values=", ".join(["0.9"] * 17)), "values", "at most 16"),
    ("SkipTuningSweep", dict(SWEEP, sweep="rho_middle"), "sweep", "rho_bottom, rho_top"),
]


@pytest.mark.parametrize("node_id,inputs,field,phrase", CASES, ids=[f"{c[0]}-{c[2]}-{i}" for i, c in enumerate(CASES)])
def test_bad_input_names_the_field(comfy_nodes_loaded, node_id, inputs, field, phrase):
    # The pack ComfyUI loaded has its own module name, so match the class by name.
    with pytest.raises(ValueError) as error:
        run_node(comfy_nodes_loaded, node_id, model=tiny_model("sd1"), **inputs)
    assert type(error.value).__name__ == "SkipTuningError"
    message = str(error.value)
    assert message.startswith(field) or f"{field} " in message or f"{field}:" in message, message
    assert phrase in message, message


class DiTModel(torch.nn.Module):
    """Stands for a Flux/SD3-style transformer: no input_blocks, no output_blocks."""

    def __init__(self):
        super().__init__()
        self.double_blocks = torch.nn.ModuleList([torch.nn.Linear(4, 4)])


@pytest.mark.parametrize("node_id,inputs", [("SkipTuning", SIMPLE), ("SkipTuningAdvanced", ADVANCED),
                                            ("SkipTuningSweep", SWEEP)])
def test_model_without_unet_skips_is_refused_by_name(comfy_nodes_loaded, node_id, inputs):
    """A DiT-style model inside a real ModelPatcher gets a message naming it and what is supported."""
    model = tiny_model("sd1")
    model.model.diffusion_model = DiTModel()
    with pytest.raises(ValueError) as error:
        run_node(comfy_nodes_loaded, node_id, model=model, **inputs)
    assert type(error.value).__name__ == "SkipTuningError"
    message = str(error.value)
    assert message.startswith("model:") and "BaseModel" in message and "SDXL" in message and "Flux" in message
