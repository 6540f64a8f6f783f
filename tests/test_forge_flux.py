"""Residual Tuning (DiT, experimental) through the WebUI script on Forge main's own Flux (backend/nn/flux.py),
KModel, PredictionFlux, UnetPatcher and sampling function, in Forge main's venv; tests/forge_flux_harness.py
says what is Forge's code and what stands in. Forge's Flux looks up no block replacements, so the script
hooks the blocks for the span of `p.sample`."""
import pytest

from harness import REPO, run_harness
from skip_tuning_lab.hosts import host_tree

FORGE_MAIN = "forge-dfdcbab6"


@pytest.fixture(scope="module")
def forge():
    python = REPO / ".venv-forge" / "bin" / "python"
    if not python.exists():
        pytest.skip(f"Forge main's venv is missing ({python}): run tools/setup.sh")
    try:
        root = host_tree(FORGE_MAIN)
    except FileNotFoundError as missing:
        pytest.skip(f"Forge main's source is not here: {missing}")
    return run_harness("forge_flux_harness.py", root, python=python)[0]


@pytest.mark.parametrize("cfg", ["1", "4"])
def test_the_script_tunes_forges_flux_as_hand_hooks_do_and_takes_its_hooks_off(forge, cfg):
    """A first-to-last ramp 0.8 → 1 over the 5 blocks equals hand-written torch hooks; during `p.sample` the
    transformer and its 5 blocks carry the hooks, afterwards none, and the model samples as before."""
    run = forge[f"cfg{cfg}"]
    assert run["vs_reference"] < 1e-5 and run["vs_untuned"] > 1e-2
    assert run["hooks_during"] == [6] and run["hooks_after"] == 0 and run["after_vs_untuned"] == 0.0


def test_infotext_rho_one_off_and_the_single_blocks_setting(forge):
    assert forge["infotext"] == "rho_first=0.8; rho_last=1; blocks=all; start=0; end=1"
    assert forge["rho_one_vs_untuned"] == 0.0
    assert forge["off"] == {"vs_untuned": 0.0, "hooks_during": [0]}
    assert forge["single_hooks_during"] == [4]  # the transformer and its 3 single-stream blocks


def test_the_range_is_placed_on_forges_predictor(forge):
    assert forge["range_changed"] == forge["range_expected"]
    assert any(forge["range_expected"]) and not all(forge["range_expected"])


def test_bad_input_fails_the_request_and_a_unet_is_reported_where_the_person_sees_it(forge):
    assert forge["bad_value"] == "SkipTuningError: rho_first must be a finite number from 0 to 3, got 5.0"
    comments = forge["unet"]["comments"]
    assert len(comments) == 1 and "IntegratedUNet2DConditionModel" in comments[0] and "Skip Tuning" in comments[0]
    assert forge["unet"]["hooks_during"] == [0] and forge["unet"]["infotext"] is None
