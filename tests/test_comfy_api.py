"""The same node ids, inputs and results through ComfyUI's V3 node API and through the classic API."""
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from test_comfy_patch import run_node, sample
from tiny_models import tiny_model

REPO = Path(__file__).resolve().parents[1]
NODE_IDS = ["SkipTuning", "SkipTuningAdvanced", "SkipTuningSweep", "SkipTuningDigitsLoader", "SkipTuningDigitPrompt"]


@pytest.fixture(scope="module")
def classic_pack(comfy_nodes_loaded, tmp_path_factory):
    """The pack imported as on ComfyUI before 0.3.48, where `comfy_api.latest` does not exist."""
    link = tmp_path_factory.mktemp("custom_nodes") / "skip_tuning_classic"
    link.symlink_to(REPO, target_is_directory=True)
    hidden = sys.modules.get("comfy_api.latest")
    sys.modules["comfy_api.latest"] = None  # makes `from comfy_api.latest import ...` raise ImportError
    try:
        spec = importlib.util.spec_from_file_location("skip_tuning_classic", link / "__init__.py",
                                                      submodule_search_locations=[str(link)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    finally:
        sys.modules["comfy_api.latest"] = hidden
    return module


def test_v3_comfyui_gets_only_the_entrypoint(comfy_nodes_loaded):
    from skip_tuning_lab.comfy_host import load_pack

    pack = load_pack()
    assert hasattr(pack, "comfy_entrypoint") and not hasattr(pack, "NODE_CLASS_MAPPINGS")
    for node_id in NODE_IDS:
        assert hasattr(comfy_nodes_loaded[node_id], "define_schema"), node_id


def test_classic_comfyui_gets_the_mappings(classic_pack):
    assert not hasattr(classic_pack, "comfy_entrypoint")
    assert sorted(classic_pack.NODE_CLASS_MAPPINGS) == sorted(NODE_IDS)
    assert classic_pack.NODE_DISPLAY_NAME_MAPPINGS["SkipTuning"] == "Skip Tuning"


@pytest.mark.parametrize("node_id", NODE_IDS)
def test_inputs_and_outputs_match_between_apis(comfy_nodes_loaded, classic_pack, node_id):
    """Saved workflows store widget values by position: both APIs must list the same inputs in order."""
    v3, classic = comfy_nodes_loaded[node_id], classic_pack.NODE_CLASS_MAPPINGS[node_id]
    v3_inputs, classic_inputs = v3.INPUT_TYPES()["required"], classic.INPUT_TYPES()["required"]
    assert list(v3_inputs) == list(classic_inputs)
    for name, (kind, options) in classic_inputs.items():
        v3_kind, v3_options = v3_inputs[name]
        assert v3_kind == kind or (isinstance(kind, list) and v3_kind == "COMBO"), name
        for key in ("default", "min", "max", "step", "tooltip"):
            assert v3_options.get(key) == options.get(key), (name, key)
    assert tuple(v3.RETURN_TYPES) == classic.RETURN_TYPES
    assert tuple(v3.OUTPUT_IS_LIST) == classic.OUTPUT_IS_LIST
    assert v3.CATEGORY == classic.CATEGORY


def test_classic_and_v3_nodes_patch_identically(comfy_nodes_loaded, classic_pack):
    model = tiny_model("sd1")
    inputs = dict(model=model, rho_top=1.0, rho_bottom=0.7, start_percent=0.1, end_percent=0.9)
    (v3_model,) = run_node(comfy_nodes_loaded, "SkipTuning", **inputs)
    (classic_model,) = run_node(classic_pack.NODE_CLASS_MAPPINGS, "SkipTuning", **inputs)
    assert torch.equal(sample(v3_model, steps=4), sample(classic_model, steps=4))
