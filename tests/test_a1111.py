"""The WebUI extension inside the real AUTOMATIC1111 1.10.1: its start-up, extension loader, UI, API server,
process_images and built-in scripts, with a tiny random checkpoint (tests/a1111_harness.py, run with the A1111
venv .venv-a1111 that tools/setup.sh builds with A1111's own pins). Each number below was measured there."""
import pytest

from harness import REPO, run_harness
from skip_tuning_lab.hosts import host_tree

PYTHON = REPO / ".venv-a1111" / "bin" / "python"


@pytest.fixture(scope="module")
def a1111(tmp_path_factory):
    try:
        root = host_tree("a1111-")
    except FileNotFoundError as missing:
        pytest.skip(f"A1111's source is not here: {missing}")
    if not PYTHON.exists():
        pytest.skip(f"the A1111 venv is missing ({PYTHON}): run tools/setup.sh")
    return run_harness("a1111_harness.py", root, tmp_path_factory.mktemp("a1111"), python=PYTHON)[0]


def test_a1111_loads_the_extension_with_its_ui_settings_tab_and_xyz_axes(a1111):
    assert a1111["output_blocks"] == 12
    assert a1111["controls"] == {"txt2img": 6, "img2img": 6}
    assert a1111["settings"] == ["skip_tuning_default_rho_bottom", "skip_tuning_default_rho_top",
                                 "skip_tuning_in_hires_pass"]
    assert a1111["tab"]
    assert a1111["xyz_axes"] == [f"[Skip Tuning] {n}" for n in ("rho_top", "rho_bottom", "start_percent", "end_percent")]


def test_send_to_img2img_copies_every_control_and_a_pasted_png_sets_them(a1111):
    """A1111's "Send to" copies the paste fields whose name is listed in paste_field_names (bug: callables
    never matched, so nothing arrived)."""
    assert a1111["send_to_img2img"] and all(a1111["send_to_img2img"])
    assert a1111["pasted"] == [True, 0.9, 0.7, 0.2, 0.8, ""]


def test_api_txt2img_equals_the_hand_reference_and_leaves_no_hook(a1111):
    run = a1111["txt2img"]
    assert run["status"] == 200 and run["infotext"]
    assert run["vs_reference"] == 0 and run["vs_off"] > 0
    assert run["hooks_left"] == 0 and a1111["hooks_after_api"] == 0
    assert a1111["api_dict"]["vs_reference"] == 0, "one dict of named values works like the positional list"
    assert a1111["api_dict"]["disabled_vs_off"] == 0 and not a1111["api_dict"]["disabled_infotext"]
    assert a1111["api_dict"]["too_many_cut_by_a1111"] == 0


def test_api_infotext_tunes_exactly_like_the_same_values_given_as_args(a1111):
    """`POST /sdapi/v1/txt2img` with an `infotext` carrying "Skip Tuning: ..." (bug: HTTP 200, untuned image)."""
    run = a1111["api_infotext"]
    assert run["status"] == 200 and run["infotext"]
    assert run["vs_reference"] == 0 and run["vs_off"] > 0
    assert run["without_key_vs_off"] == 0


@pytest.mark.parametrize("field, message", [
    ("rho_bottom", "rho_bottom must be a finite number from 0 to 3, got 9.0"),
    ("rho_top", "rho_top must be a number from 0 to 3, got 'lots'"),
    ("end_percent", "start_percent (0.6) must not be after end_percent (0.2)"),
])
def test_api_bad_value_fails_the_request_with_the_field_and_its_range(a1111, field, message):
    """A1111 only prints errors raised in a script's process() (bug: HTTP 200 and an untuned image)."""
    bad = a1111["api_bad"][field]
    assert bad["status"] == 500 and bad["error"] == "SkipTuningError" and bad["images"] == 0
    assert bad["errors"] == message


def test_img2img_and_loopback_are_tuned_with_exactly_rho_in_every_loop(a1111):
    """Loopback reruns process_images on the same p (bug: rho, rho², rho³)."""
    assert a1111["img2img"]["vs_reference"] == 0 and a1111["img2img"]["vs_off"] > 0
    loop = a1111["loopback"]
    assert loop["images"] == 4, "the grid and three loops"
    assert loop["vs_reference"] == [0, 0, 0, 0] and min(loop["vs_off"]) > 0 and loop["hooks_left"] == 0


def test_hires_is_tuned_by_default_and_the_setting_leaves_only_that_pass_out(a1111):
    hires = a1111["hires"]
    assert hires["vs_reference"] == 0 and hires["vs_off"] > 0
    assert hires["setting_off_vs_first_only"] == 0 and hires["setting_off_vs_tuned"] > 0


def test_xyz_rho_bottom_axis_tunes_each_cell_with_its_value(a1111):
    xyz = a1111["xyz"]
    assert xyz["images"] == 3, "the grid and two cells"
    assert xyz["rho1_vs_off"] == 0 and xyz["rho05_vs_reference"] == 0 and xyz["hooks_left"] == 0


def test_sdxl_layout_sgm_unet_through_sgms_wrapper_equals_the_hand_reference(a1111):
    sgm = a1111["sgm"]
    assert sgm["output_blocks"] == 9 and sgm["vs_reference"] == 0.0 and sgm["vs_off"] > 1e-3
    assert sgm["hooks_left"] == 0


def test_a_replaced_unet_gets_a_comment_saying_skip_tuning_had_no_effect(a1111):
    replaced = a1111["sd_unet"]
    assert replaced["tuned_vs_off"] == 0 and replaced["hooks_left"] == 0
    assert "Skip Tuning had no effect: the U-Net is replaced by 'Stand-in engine'" in replaced["comments"]


@pytest.mark.parametrize("case, unets", [("refiner", [12, 12]), ("refiner_other_layout", [8, 12]),
                                         ("hires_checkpoint", [12, 12]), ("hires_checkpoint_other_layout", [8, 12])])
def test_the_refiner_and_a_hires_checkpoint_are_tuned_when_they_take_over(a1111, case, unets):
    """Another checkpoint loaded as a new model object mid-generation, of the same layout or another: its steps
    are tuned too, each U-Net with the ramp for its own output blocks (bug: only the first model was)."""
    run = a1111[case]
    assert run["unets"] == unets, "the reference saw both models sample"
    assert run["vs_reference"] == 0 and run["vs_off"] > 0
    assert run["hooks_left"] == [0, 0]
    assert "tuned only the first model" not in run["comments"]
