"""The WebUI extension in Forge main, reForge, Forge Classic and AUTOMATIC1111 1.10.1, each started as its own
application (`launch.py --api`, its own venv, the extension found in `extensions/` by its own loader; see
tests/webui_apps.py) and tested through HTTP only. The hand reference is computed in the same server process
(tests/webui_probe), so every tuned image is compared with it to the last bit (tests/webui_app_checks.py)."""
import pytest

from webui_app_checks import BAD_MESSAGE, measure, measure_api_only
from webui_apps import HostUnavailable, webui_app

FORKS = ["forge", "reforge", "classic"]
HOSTS = FORKS + ["a1111"]
OUTPUT_BLOCKS = {"forge": 12, "reforge": 4, "classic": 4, "a1111": 12}  # of each tiny checkpoint's U-Net


@pytest.fixture(scope="module", params=HOSTS)
def app(request):
    """What one WebUI measured, and its console; the server runs only while it is measured."""
    try:
        with webui_app(request.param, ui=True, probe=True) as started:
            results = measure(started)
            results["console"] = started.console()
    except HostUnavailable as missing:
        pytest.skip(str(missing))
    results["host"] = request.param
    return results


@pytest.fixture(scope="module", params=["forge", "classic", "a1111"])
def api_only(request):
    """The same WebUI started with `--nowebui` (the API without the gradio UI). reForge is left out to save
    half a minute: it loads X/Y/Z from scripts/xyz_grid.py as A1111 and Forge main do (Forge Classic from its
    built-in extension)."""
    try:
        with webui_app(request.param, ui=False, probe=True) as started:
            return measure_api_only(started)
    except HostUnavailable as missing:
        pytest.skip(str(missing))


def test_the_webuis_own_loader_finds_the_extension_and_xyz_lists_its_axes(app):
    assert app["xyz_axes"] == [f"[Skip Tuning] {n}" for n in ("rho_top", "rho_bottom", "start_percent", "end_percent")]


def test_txt2img_with_args_and_with_a_dict_equals_the_hand_reference(app):
    run = app["txt2img"]
    assert run["status"] == 200 and run["infotext"], "the response's infotext carries 'Skip Tuning: ...'"
    assert run["unets"] == [OUTPUT_BLOCKS[app["host"]]]
    assert run["vs_reference"] == 0 and run["vs_off"] > 0
    assert app["api_dict"]["vs_reference"] == 0


def test_enabled_false_is_off_bit_for_bit_and_writes_no_infotext(app):
    assert app["api_dict"]["disabled_vs_off"] == 0 and app["api_dict"]["disabled_args_vs_off"] == 0
    assert not app["api_dict"]["disabled_infotext"]


def test_a_bad_value_fails_the_request_with_the_field_and_the_console_says_so(app):
    """Every fork swallows the error raised in process() ("*** Error running process"); the one raised from
    `p.sample` fails the request. Forge main's error body carries the text under "message", the others under
    "errors"."""
    bad = app["api_bad"]
    assert bad["status"] == 500 and bad["error"] == "SkipTuningError" and bad["images"] == 0
    assert bad["message" if app["host"] == "forge" else "errors"] == BAD_MESSAGE
    assert bad["in_console"] and bad["swallowed"]


def test_residual_tuning_through_the_api_leaves_a_unet_untuned_saying_why_and_fails_a_bad_value(app):
    """The Residual Tuning accordion is loaded beside Skip Tuning and takes API args; on these U-Net checkpoints
    the image is the untuned one, the console (and the UI's comments) say why (Forge: when `p.sample` starts;
    A1111: in `process`), and the infotext does not claim it (bug: it did; the API's info carries no comments,
    so the infotext is what an API caller reads). rho_first 5 fails the request with the field."""
    run = app["residual_on_unet"]
    assert run["status"] == 200 and run["vs_off"] == 0 and run["in_console"]
    assert "Residual Tuning" not in run["infotext"] and "Steps: 4" in run["infotext"]
    assert run["bad_status"] == 500 and "rho_first must be a finite number from 0 to 3, got 5" in run["bad_body"]


def test_the_api_infotext_field_tunes_like_args_where_the_host_reads_it(app):
    run = app["api_infotext"]
    if app["host"] == "forge":
        # Forge main's own request model fails on any `infotext` (modules/api/models.py 109 declares its type
        # `str | None`, which get_field_value passes to isinstance), with or without this extension.
        assert run["status"] == 500 and run["error"] == "TypeError"
        assert "parameterized generic" in run["message"]
    else:
        assert run["status"] == 200 and run["vs_reference"] == 0 and run["vs_off"] > 0


def test_img2img_with_args_and_with_a_dict_and_loopback_are_tuned_exactly_in_every_loop(app):
    assert app["img2img"]["vs_reference"] == 0 and app["img2img"]["vs_off"] > 0
    assert app["img2img"]["dict_vs_reference"] == 0
    loop = app["loopback"]
    assert loop["images"] == 4, "the grid and three loops"
    assert loop["vs_reference"] == [0, 0, 0, 0]


def test_hires_is_tuned_by_default_and_the_setting_leaves_only_that_pass_out(app):
    hires = app["hires"]
    assert hires["vs_reference"] == 0
    assert hires["setting_off_vs_first_only"] == 0 and hires["setting_off_vs_tuned"] > 0


def test_xyz_rho_bottom_axis_tunes_each_cell_with_its_value(app):
    xyz = app["xyz"]
    assert xyz["status"] == 200 and xyz["images"] == 3, "the grid and two cells"
    assert xyz["rho1_vs_off"] == 0 and xyz["rho05_vs_reference"] == 0


def test_xyz_has_the_axes_in_api_only_mode_too(api_only):
    """In `--nowebui` X/Y/Z takes its axes before on_before_ui callbacks run (bug: an index past its list,
    HTTP 500); the extension also registers them when it loads."""
    xyz = api_only["xyz"]
    assert xyz["status"] == 200 and xyz["images"] == 3
    assert xyz["rho1_vs_off"] == 0 and xyz["rho05_vs_reference"] == 0


@pytest.mark.parametrize("case", ["refiner", "hires_checkpoint"])
def test_the_refiner_and_a_hires_checkpoint_are_tuned_after_they_take_over(app, case):
    """Another checkpoint loaded mid-generation: its U-Net samples tuned too. Bug: the forks' refiner is a
    freshly loaded model whose forge_objects.unet nothing tuned (off the reference by 1/255 in Forge main,
    11 in reForge, 12 in Forge Classic); their hires checkpoint was tuned already (process_before_every_sampling
    runs after the switch)."""
    run = app[case]
    blocks = OUTPUT_BLOCKS[app["host"]]
    assert run["unets"] == [blocks, blocks], "the reference saw both models sample"
    assert run["vs_reference"] == 0 and run["infotext"]
