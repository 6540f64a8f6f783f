"""The Comfy Registry's own tool (comfy-cli) accepts pyproject.toml and packs the zip users download: only what
runs in ComfyUI, and that zip alone loads every node through ComfyUI's loader."""
import asyncio
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import nodes as comfy_nodes  # ComfyUI's nodes.py

REPO = Path(__file__).resolve().parents[1]
COMFY = Path(sys.executable).parent / "comfy"
WORKFLOWS = sorted(p.name for p in (REPO / "example_workflows").glob("*.json"))
SHIPPED_TOP = {"__init__.py", "LICENSE", "README.md", "pyproject.toml", ".comfyignore", "nodes", "skip_tuning_core",
               "lab_models", "web", "example_workflows"}


@pytest.fixture(scope="module")
def comfy_cli(tmp_path_factory):
    """comfy-cli with its own home (its config), tracking off, run in the repository."""
    if not COMFY.exists():
        pytest.skip(f"comfy-cli is not installed at {COMFY}: run tools/setup.sh")
    env = dict(os.environ, HOME=str(tmp_path_factory.mktemp("home")))
    env.pop("XDG_CONFIG_HOME", None)

    def run(*args):
        done = subprocess.run([str(COMFY), "--skip-prompt", *args], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr
    run("tracking", "disable")
    return run


@pytest.fixture(scope="module")
def packed(comfy_cli, tmp_path_factory):
    """The zip `comfy node pack` builds from the git-tracked files, moved out of the repository."""
    target = tmp_path_factory.mktemp("pack") / "node.zip"
    try:
        comfy_cli("node", "pack")
    finally:
        if (REPO / "node.zip").exists():
            shutil.move(REPO / "node.zip", target)
    return zipfile.ZipFile(target)


def test_the_registry_validates_pyproject_without_a_warning(comfy_cli):
    out = comfy_cli("node", "validate")
    assert "passed" in out and "warning" not in out.lower(), out


def test_the_zip_holds_only_what_runs_in_comfyui(packed):
    names = packed.namelist()
    assert {name.split("/")[0] for name in names} == SHIPPED_TOP
    for workflow in WORKFLOWS:
        assert f"example_workflows/{workflow}" in names
        assert f"example_workflows/{workflow[:-5]}.jpg" in names, f"{workflow} has no thumbnail in the zip"
    assert any(name.startswith("lab_models/") and name.endswith(".safetensors") for name in names)


def test_the_zip_alone_loads_every_node_through_comfyuis_loader(comfy_nodes_loaded, packed, tmp_path):
    folder = tmp_path / "skip_tuning_from_zip"
    packed.extractall(folder)
    assert asyncio.run(comfy_nodes.load_custom_node(str(folder)))
    module = sys.modules[str(folder).replace(".", "_x_")]
    assert set(module.NODE_CLASS_MAPPINGS) == {"SkipTuning", "SkipTuningAdvanced", "SkipTuningSweep",
                                               "ResidualTuningDiT", "SkipTuningDigitsLoader", "SkipTuningDigitPrompt"}
    assert set(module.NODE_CLASS_MAPPINGS["SkipTuningDigitsLoader"].INPUT_TYPES()["required"]["model_name"][0]) == {
        "digits16.safetensors", "digits16_dit.safetensors", "digits16_lcm.safetensors"}, "the lab's three models"


def test_the_readme_states_the_comfyui_version_pyproject_requires():
    """The supported range users read is the one the registry enforces (`requires-comfyui`), and the oldest
    ComfyUI the tests run is named beside it."""
    import tomllib

    required = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["comfy"]["requires-comfyui"]
    readme = (REPO / "README.md").read_text()
    assert f'`requires-comfyui = "{required}"`' in readme
    assert "run by the tests on the ComfyUI of 2024-12-24" in readme
