"""The WebUI extension's Forge patch on reForge's and Forge Classic's own `ldm_patched` backends and
UnetPatcher (../shared/hosts/), each in a process of its own; tests/forge_family_harness.py says what is the
fork's code and what stands in. Both keep the schedule on `model_sampling` (no `predictor`), and reForge's
WebUI sampler never runs the patcher's APPLY_MODEL wrappers: each once left the image untuned."""
import pytest

from harness import run_harness
from skip_tuning_lab.hosts import host_tree


@pytest.fixture(scope="module", params=["reforge-", "forge-classic-"])
def fork(request):
    try:
        root = host_tree(request.param)
    except FileNotFoundError as missing:
        pytest.skip(f"the fork's source is not here: {missing}")
    return run_harness("forge_family_harness.py", root)[0]


@pytest.mark.parametrize("cfg", ["1", "4"])
def test_both_passes_equal_hand_scaled_skips_on_the_forks_sampler(fork, cfg):
    """First pass and hires pass (forge_objects reset in between, as the forks' processing.py does): each
    equals a clone whose output-block patch scales skip j by its rho, and differs from no patch."""
    assert not fork["schedule_has_predictor"]
    assert fork[f"first_vs_reference_cfg{cfg}"] == 0.0 and fork[f"hires_vs_reference_cfg{cfg}"] == 0.0
    assert fork[f"reference_vs_untuned_cfg{cfg}"] > 1e-3


def test_the_script_writes_its_infotext_and_the_hires_setting_leaves_only_that_pass_out(fork):
    assert fork["infotext"] == "rho_top=1; rho_bottom=0.6; start=0; end=1"
    assert fork["setting_off"] == {"first_vs_reference": 0.0, "hires_is_base": True}


def test_rho_one_is_bit_identical_off_patches_nothing_and_the_base_patcher_is_untouched(fork):
    assert fork["rho_one_vs_untuned"] == 0.0 and fork["off_is_base"]
    assert fork["base_options_unchanged"] and fork["base_after_vs_untuned"] == 0.0


def test_the_range_gates_the_steps_on_the_forks_model_sampling(fork):
    assert fork["range_scaled"] == fork["range_expected"]
    assert any(fork["range_scaled"]) and not all(fork["range_scaled"])


def test_a_model_without_skips_is_left_alone_with_a_message(fork):
    assert fork["unsupported_left_alone"] and fork["unsupported_infotext"] is None
    assert len(fork["unsupported_comment"]) == 1 and "has none" in fork["unsupported_comment"][0]
