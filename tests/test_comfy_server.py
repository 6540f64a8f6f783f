"""The real ComfyUI server lists the nodes and runs every shipped example workflow through POST /prompt."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skip_tuning_lab.comfy_server import ComfyServer, ui_to_api

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((REPO / "example_workflows").glob("*.json"))
NODE_IDS = ["SkipTuning", "SkipTuningAdvanced", "SkipTuningSweep", "SkipTuningDigitsLoader", "SkipTuningDigitPrompt"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with ComfyServer(tmp_path_factory.mktemp("comfyui"), extra_packs=[Path(__file__).parent / "comfy_test_nodes"]) as s:
        yield s


@pytest.fixture(scope="module")
def object_info(server):
    return server.get("/object_info")


def test_object_info_lists_every_node_with_its_inputs(object_info):
    for node_id in NODE_IDS:
        assert node_id in object_info, node_id
    skip = object_info["SkipTuning"]
    assert skip["display_name"] == "Skip Tuning" and skip["category"] == "model_patches/unet"
    assert skip["input_order"]["required"] == ["model", "rho_top", "rho_bottom", "start_percent", "end_percent"]
    for name in skip["input_order"]["required"]:
        assert skip["input"]["required"][name][1].get("tooltip"), f"{name} has no tooltip"
    assert skip["input"]["required"]["rho_bottom"][1]["default"] == 0.8
    assert skip["input"]["required"]["rho_bottom"][1]["max"] > 1.0
    assert "sampler" in skip["description"]
    assert object_info["SkipTuningSweep"]["output_is_list"] == [True, True]


def test_example_workflows_are_served_as_templates(server):
    templates = server.get("/workflow_templates")
    served = {name for names in templates.values() for name in names}
    assert served == {path.stem for path in WORKFLOWS}


def swap_loaders(prompt: dict, run: int) -> dict:
    """Only the checkpoint loader and the text encoders change: tiny test models instead of SD weights."""
    kind = None
    for node in prompt.values():
        if node["class_type"] == "CheckpointLoaderSimple":
            kind = "sdxl" if "xl" in node["inputs"]["ckpt_name"] else "sd1"
            node.update(class_type="SkipTuningTestCheckpoint", inputs={"kind": kind})
    for node in prompt.values():
        if node["class_type"] == "CLIPTextEncode":
            # A per-run suffix: ComfyUI serves an identical prompt from its cache.
            node.update(class_type="SkipTuningTestTextEncode",
                        inputs={"text": f"{node['inputs']['text']} #{run}", "kind": kind})
    return prompt


def widget_values_match_inputs(workflow: dict, object_info: dict):
    """Every node of ours in the file has exactly one widget value per widget input, in order."""
    for node in workflow["nodes"]:
        if node["type"].startswith("SkipTuning"):
            info = object_info[node["type"]]
            widgets = [n for n in info["input_order"]["required"] if info["input"]["required"][n][0] != "MODEL"]
            assert len(node["widgets_values"]) == len(widgets), (node["type"], node["widgets_values"])


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_example_workflow_runs_on_the_server(server, object_info, path):
    workflow = json.loads(path.read_text())
    widget_values_match_inputs(workflow, object_info)
    prompt = swap_loaders(ui_to_api(workflow, object_info), run=1)
    files = server.output_files(server.run_prompt(prompt))
    images = [np.asarray(Image.open(f), dtype=np.float32) for f in files]
    assert images and all(np.isfinite(im).all() for im in images)
    if "_ab" in path.stem:  # an A/B workflow: one image set without, one with Skip Tuning
        names = sorted(f.name for f in files)
        assert any("_off_" in n for n in names) and any("_on_" in n for n in names)
        assert len(images) % 2 == 0
        off = [im for f, im in zip(files, images) if "_off_" in f.name]
        on = [im for f, im in zip(files, images) if "_on_" in f.name]
        assert any(np.abs(a - b).max() > 0 for a, b in zip(off, on)), "Skip Tuning changed nothing"
    if "sweep" in path.stem:
        for label in ("rho_bottom_1", "rho_bottom_0.9", "rho_bottom_0.8", "rho_bottom_0.7"):
            assert any(f.name.startswith(label + "_") for f in files), (label, [f.name for f in files])
