"""The WebUI script inside SD.Next's own script machinery (../shared/hosts/sdnext-*.tar.gz), tuning a real
diffusers pipeline through the adapter. tests/sdnext_harness.py says what is SD.Next's and what stands in."""
import pytest

from harness import run_harness
from skip_tuning_lab.hosts import host_tree


@pytest.fixture(scope="module")
def sdnext_run():
    try:
        root = host_tree("sdnext-")
    except FileNotFoundError as missing:
        pytest.skip(f"SD.Next's source is not here: {missing}")
    return run_harness("sdnext_harness.py", root)  # its console: rich prints errors to stdout


def test_sdnext_loads_the_script_and_tunes_its_pipeline_exactly_as_the_adapter(sdnext_run):
    results, _ = sdnext_run
    assert results["skips_hooked"] == 12
    assert results["hooks_while_on"] == 12 + 1, "one hook per skip and one reading the U-Net's timestep"
    assert results["on_vs_reference"] == 0.0, "the image equals attach(pipe, 0.6, 0.3) around the same call"
    assert results["on_vs_plain"] > 1e-4, "and differs from the untuned image"
    assert results["infotext"] == "rho_top=0.6; rho_bottom=0.3; start=0; end=1"
    assert results["late_vs_reference"] == 0.0, "a range (start 0.5) means what it means for the adapter"


def test_sdnext_leaves_no_hook_after_a_generation_on_off_or_failed(sdnext_run):
    """SD.Next has no `p.sample`: the hooks come off in `postprocess` and, when the pipeline dies (SD.Next
    catches its error, so `postprocess` still runs) or anything else ends the run, in the after-process
    callback its `process_images` runs in `finally`."""
    results, _ = sdnext_run
    assert results["hooks_after_on"] == 0 and results["hooks_after_off"] == 0
    assert results["hooks_when_failing"] == 12 + 1 and results["hooks_after_failure"] == 0
    assert results["off_vs_plain"] == 0.0 and results["after_all_vs_plain"] == 0.0


def test_sdnext_hires_setting_off_leaves_the_hires_pass_untuned(sdnext_run):
    assert sdnext_run[0]["hires_off_vs_plain"] == 0.0


def test_sdnext_bad_value_is_reported_by_name_and_the_image_is_untuned(sdnext_run):
    """SD.Next's ScriptRunner catches errors raised in `process()` and prints them; nothing is hooked."""
    results, console = sdnext_run
    assert "rho_bottom must be a finite number from 0 to 3, got 9.0" in console
    assert results["bad_vs_plain"] == 0.0 and results["hooks_after_bad"] == 0


def test_sdnext_residual_tuning_tunes_a_flux_pipeline_exactly_as_the_adapter_and_skip_tuning_says_why_not(sdnext_run):
    """SD.Next runs Flux through diffusers: the Residual Tuning accordion (loaded beside Skip Tuning from the
    extension's scripts/ folder) gives the image attach_residual gives around the same call, a range included;
    the transformer and its 5 blocks carry hooks while it samples, none after, and the scheduler gets its own
    set_timesteps back. Skip Tuning on the same pipeline leaves it untuned and says why in the image's comment."""
    residual = sdnext_run[0]["residual"]
    assert residual["vs_reference"] == 0.0 and residual["vs_plain"] > 1e-4
    assert residual["infotext"] == "rho_first=0.8; rho_last=0.9; blocks=all; start=0.2; end=0.9"
    assert residual["hooks_during"] == 6 and residual["hooks_after"] == 0 and residual["scheduler_restored"]
    skip = sdnext_run[0]["skip_tuning_on_flux"]
    assert skip["vs_plain"] == 0.0 and skip["infotext"] is None
    assert len(skip["comments"]) == 1 and "(FluxPipeline) has none" in skip["comments"][0]
