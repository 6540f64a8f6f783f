"""The WebUI Script through A1111's and Forge's call order, with real gradio and real U-Nets.

Only A1111's `modules` package is a stand-in (tests/webui_standin, each file citing the source it
mirrors); the U-Nets (ldm; ComfyUI's ModelPatcher for Forge's UnetPatcher contract), torch hooks and
gradio 3.41.2 are real.
"""
import copy
import logging
import sys
import types
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent / "webui_standin"))

import comfy.sample  # noqa: E402
from modules import processing, script_callbacks, scripts, shared  # noqa: E402

from skip_tuning_core import SkipTuningError  # noqa: E402
from sd_webui_ext.params import ARG_NAMES, INFOTEXT_KEY, SkipParams, params_from_args  # noqa: E402
from sd_webui_ext.script import follow_the_sampled_model  # noqa: E402

from harness import hooks_left, load_entry_point  # noqa: E402
from test_comfy_errors import DiTModel  # noqa: E402
from test_webui_attach import ldm_unet  # noqa: E402
from tiny_models import conditioning, tiny_model  # noqa: E402

SCRIPT_MODULE = load_entry_point()
SkipTuningScript = SCRIPT_MODULE.SkipTuningScript
script_callbacks.ui_settings_callback()  # the WebUI adds every extension's settings at start-up


def alphas_cumprod():
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


class LdmModel:
    """A1111's model object as the script sees it: `p.sd_model.model.diffusion_model` is the ldm U-Net."""

    latent_shape = (1, 4, 16, 16)

    def __init__(self, unet=None):
        self.model = types.SimpleNamespace(diffusion_model=unet if unet is not None else ldm_unet("sd1"))
        self.context = torch.randn(1, 4, 32, generator=torch.Generator().manual_seed(5))
        self.sigmas = ((1 - alphas_cumprod()) / alphas_cumprod()).sqrt().float()
        self.calls = []

    def run_sampler(self, p, x, cond, timesteps):
        """Euler on the discrete schedule, recording every U-Net call (input, timestep, output, pass)."""
        x = x * self.sigmas[timesteps[0]]
        for i, t in enumerate(timesteps):
            sigma = self.sigmas[t]
            x_in = x / (sigma ** 2 + 1) ** 0.5
            t_in = torch.tensor([float(t)])
            with torch.no_grad():
                eps = self.model.diffusion_model(x_in, t_in, self.context)
            self.calls.append((x_in.clone(), t_in, eps.clone(), p.is_hr_pass))
            sigma_next = self.sigmas[timesteps[i + 1]] if i + 1 < len(timesteps) else 0.0
            x = x + eps * (sigma_next - sigma)
        return x


class ForgeModel:
    """Forge's model object: `forge_objects.unet` is a patcher (ComfyUI's ModelPatcher has its contract)."""

    latent_shape = (1, 4, 16, 16)

    def __init__(self):
        unet = tiny_model("sd1")
        unet.model.predictor = unet.model.model_sampling  # Forge's name for it
        self.forge_objects_original = processing.ForgeObjects(unet)
        self.forge_objects = self.forge_objects_original.shallow_copy()

    def run_sampler(self, p, x, cond, timesteps):
        model = self.forge_objects.unet
        return comfy.sample.sample(model, x, len(timesteps), 1.0, "euler", "normal", conditioning("sd1", 1),
                                   conditioning("sd1", 2), torch.zeros_like(x), denoise=len(timesteps) / 5)


def make_runner(is_img2img=False):
    runner = scripts.ScriptRunner([SkipTuningScript], is_img2img)
    controls = runner.setup_ui()
    return runner, controls


def generate(model, args, enable_hr=False, hires_option=True, seed=0):
    runner, _ = make_runner()
    shared.opts.data["skip_tuning_in_hires_pass"] = hires_option
    p = processing.StableDiffusionProcessingTxt2Img(model, runner, args, enable_hr=enable_hr, seed=seed)
    return p, processing.process_images(p)



ON = [True, 1.0, 0.6, 0.0, 1.0, ""]
OFF = [False, 1.0, 0.6, 0.0, 1.0, ""]


def test_ui_has_one_component_per_argument():
    runner, controls = make_runner()
    script = runner.alwayson_scripts[0]
    assert len(controls) == script.args_to - script.args_from == len(ARG_NAMES)
    assert isinstance(controls[0], gr.Checkbox) and controls[0].value is False
    assert [c.value for c in controls[1:]] == [1.0, 0.8, 0.0, 1.0, ""]
    # Each control twice: by name (UI paste, "Send to") and by function (the API's infotext).
    assert len(script.infotext_fields) == 2 * len(ARG_NAMES)
    assert [c for c, _ in script.infotext_fields] == controls * 2


def test_a1111_generation_is_tuned_and_leaves_no_hook():
    model = LdmModel()
    unet = model.model.diffusion_model
    _, plain = generate(model, OFF)
    p, tuned = generate(model, ON)
    assert not torch.equal(tuned.images[0], plain.images[0])
    assert hooks_left(unet) == 0
    assert p.extra_generation_params[INFOTEXT_KEY] == "rho_top=1; rho_bottom=0.6; start=0; end=1"
    _, again = generate(model, OFF)
    assert torch.equal(again.images[0], plain.images[0]), "a stale hook changed a later image"


def test_a1111_rho_one_is_bit_identical():
    model = LdmModel()
    _, plain = generate(model, OFF)
    _, identity = generate(model, [True, 1.0, 1.0, 0.0, 1.0, ""])
    assert torch.equal(identity.images[0], plain.images[0])


def test_a1111_rerun_on_the_same_p_scales_once():
    """Loopback runs process_images on the same `p` again (A1111 1.10.1 scripts/loopback.py, the loop around
    `processing.process_images(p)`): every run is made with rho once, not rho to the power of the run."""
    model = LdmModel()
    p, first = generate(model, ON)
    second = processing.process_images(p)
    third = processing.process_images(p)
    assert torch.equal(second.images[0], first.images[0]) and torch.equal(third.images[0], first.images[0])
    assert not hasattr(p.sample.skip_tuning_wraps, "skip_tuning_wraps"), "one wrapper deep"
    assert hooks_left(model.model.diffusion_model) == 0


def test_a1111_unet_replaced_through_sd_unet_says_skip_tuning_had_no_effect(monkeypatch):
    """A U-Net from A1111's sd_unet (TensorRT and the like) runs instead of the hooked layers: the image's
    comment and the console say Skip Tuning had no effect, and the image equals the untuned one."""
    from modules import sd_unet

    model = LdmModel()
    _, plain = generate(model, OFF)
    replacement = types.SimpleNamespace(option=types.SimpleNamespace(label="TRT: model"))
    monkeypatch.setattr(sd_unet, "current_unet", replacement)
    p, processed = generate(model, ON)
    assert torch.equal(processed.images[0], plain.images[0])
    assert any("had no effect" in c and "'TRT: model'" in c for c in p.comments)
    assert hooks_left(model.model.diffusion_model) == 0


def test_a1111_model_swapped_mid_generation_without_the_denoiser_callback_is_reported(monkeypatch):
    """A refiner or hires checkpoint that is another model object (A1111's `p.sd_model` is `shared.sd_model`,
    which reload_model_weights replaces), in a WebUI without `on_cfg_denoiser` (the stand-in has none), so the
    hooks cannot follow it: the first pass stays tuned and the comment says the rest was not. In A1111 itself
    the hooks follow (tests/test_a1111.py)."""
    model, refiner = LdmModel(), LdmModel(ldm_unet("sd1"))
    _, untuned = generate(model, OFF, enable_hr=True)
    p_same, _ = generate(model, ON, enable_hr=True)
    assert not p_same.comments, "no swap, no message"
    original = LdmModel.run_sampler

    def swap_before_hires(self, p, x, cond, timesteps):
        if p.is_hr_pass:
            p.sd_model = refiner
            return original(refiner, p, x, cond, timesteps)
        return original(self, p, x, cond, timesteps)

    monkeypatch.setattr(LdmModel, "run_sampler", swap_before_hires)
    p, processed = generate(model, ON, enable_hr=True)
    assert any("tuned only the first model" in c for c in p.comments)
    assert hooks_left(model.model.diffusion_model) == 0 and hooks_left(refiner.model.diffusion_model) == 0
    assert not torch.equal(processed.images[0], untuned.images[0]), "the first pass was tuned"


def test_a_model_of_no_known_kind_is_refused_with_a_message():
    """A `p.sd_model` that is neither A1111's ldm/sgm model (`.model.diffusion_model`) nor a diffusers
    pipeline (SD.Next; tests/test_sdnext.py) nor Forge's: the generation goes on untuned and the comment says
    why."""
    model = LdmModel()
    _, plain = generate(model, OFF)
    other = type("OtherModel", (), {})()
    other.unet, other.run_sampler, other.latent_shape = object(), model.run_sampler, model.latent_shape
    p, processed = generate(other, ON)
    assert torch.equal(processed.images[0], plain.images[0])
    assert any("OtherModel" in c and "neither" in c and "no effect" in c for c in p.comments)


def test_a1111_error_during_sampling_leaves_no_hook():
    model = LdmModel()
    unet = model.model.diffusion_model
    _, plain = generate(model, OFF)
    original = model.run_sampler

    def failing(p, x, cond, timesteps):
        original(p, x, cond, timesteps[:2])
        raise RuntimeError("interrupted")

    model.run_sampler = failing
    with pytest.raises(RuntimeError, match="interrupted"):
        generate(model, ON)
    assert hooks_left(unet) == 0
    model.run_sampler = original
    _, after = generate(model, OFF)
    assert torch.equal(after.images[0], plain.images[0])


@pytest.mark.parametrize("in_hires", [True, False])
def test_a1111_hires_pass_follows_the_setting(in_hires):
    """Each recorded U-Net call is re-run unhooked: scaled calls differ, unscaled ones match bit for bit."""
    model = LdmModel()
    generate(model, ON, enable_hr=True, hires_option=in_hires)
    unet = model.model.diffusion_model
    scaled = {False: [], True: []}
    for x_in, t_in, eps, hr in model.calls:
        with torch.no_grad():
            scaled[hr].append(not torch.equal(unet(x_in, t_in, model.context), eps))
    assert scaled[False] and all(scaled[False])
    assert scaled[True] and all(scaled[True]) == in_hires and any(scaled[True]) == in_hires


def test_a1111_model_without_unet_skips_continues_with_a_message_and_no_infotext():
    """The infotext is what an API caller reads (the API's info has no comments): it must not claim Skip Tuning
    for an image made without it."""
    model = LdmModel(unet=DiTModel())
    runner, _ = make_runner()
    p = processing.StableDiffusionProcessingTxt2Img(model, runner, ON)
    sample = p.sample
    runner.process(p)
    assert p.sample == sample
    assert any("this model (DiTModel) has none" in c for c in p.comments)
    assert INFOTEXT_KEY not in p.extra_generation_params


def test_forge_patches_a_clone_once_per_pass_and_leaves_the_original():
    model = ForgeModel()
    original = model.forge_objects_original.unet
    _, plain = generate(model, OFF)
    p, tuned = generate(model, ON)
    assert not torch.equal(tuned.images[0], plain.images[0])
    patches = p.sd_model.forge_objects.unet.model_options["transformer_options"]["patches"]["output_block_patch"]
    assert len(patches) == 1
    runner = p.scripts
    runner.process_before_every_sampling(p)  # again, as Forge's hires pass does: still one patch
    patches = p.sd_model.forge_objects.unet.model_options["transformer_options"]["patches"]["output_block_patch"]
    assert len(patches) == 1
    assert "patches" not in original.model_options["transformer_options"]
    _, again = generate(model, OFF)
    assert torch.equal(again.images[0], plain.images[0])


@pytest.mark.parametrize("in_hires", [True, False])
def test_forge_hires_pass_follows_the_setting(in_hires):
    model = ForgeModel()
    p, _ = generate(model, ON, enable_hr=True, hires_option=in_hires)
    patches = p.sd_model.forge_objects.unet.model_options["transformer_options"].get("patches", {})
    assert bool(patches.get("output_block_patch")) == in_hires


def test_forge_unet_less_model_continues_with_a_message():
    model = ForgeModel()
    model.forge_objects.unet.model.diffusion_model = DiTModel()
    runner, _ = make_runner()
    p = processing.StableDiffusionProcessingTxt2Img(model, runner, ON)
    unet = p.sd_model.forge_objects.unet
    runner.process(p)
    runner.process_before_every_sampling(p)
    assert p.sd_model.forge_objects.unet is unet
    assert any("needs a U-Net with skip connections" in c for c in p.comments)


def test_forge_refiner_that_takes_over_mid_generation_is_tuned_once():
    """Forge's refiner is another model loaded between two denoiser steps, and then only the `on_cfg_denoiser`
    callbacks run before its U-Net is sampled (Forge main modules/sd_samplers_common.py 166-211 apply_refiner,
    modules/sd_samplers_cfg_denoiser.py 171-184); the real WebUIs: tests/test_webui_apps.py (bug: untuned)."""
    model = ForgeModel()
    runner, _ = make_runner()
    p = processing.StableDiffusionProcessingTxt2Img(model, runner, ON)
    runner.process(p)
    runner.process_before_every_sampling(p)
    refiner = ForgeModel()
    model.forge_objects = refiner.forge_objects  # what p.sd_model.forge_objects reads after the switch
    step = types.SimpleNamespace(denoiser=types.SimpleNamespace(p=p))
    for _ in range(3):  # every later step: the same one patch
        follow_the_sampled_model(step)
    patches = p.sd_model.forge_objects.unet.model_options["transformer_options"]["patches"]["output_block_patch"]
    assert len(patches) == 1
    assert "patches" not in refiner.forge_objects_original.unet.model_options["transformer_options"]
    model.forge_objects = ForgeModel().forge_objects
    model.forge_objects.unet.model.diffusion_model = DiTModel()
    for _ in range(3):
        follow_the_sampled_model(step)
    assert sum("needs a U-Net with skip connections" in c for c in p.comments) == 1, "reported once"


def paste(fields, infotext_params):
    """A1111 1.10.1 modules/infotext_utils.py connect_paste (lines 486-495): the infotext_pasted callbacks
    run on the parsed parameters, then each field reads its key (a callable is called, a string looked up)."""
    params = dict(infotext_params)
    script_callbacks.infotext_pasted_callback("", params)
    return [key(params) if callable(key) else params.get(key) for _, key in fields]


def test_infotext_round_trip_restores_every_control():
    model = LdmModel()
    args = [True, 0.95, 0.55, 0.1, 0.9, "0.5, 0.6, 0.7, 0.8, 0.9, 1, 1, 1, 1"]
    p, _ = generate(model, args)
    runner, controls = make_runner()
    values = paste(runner.alwayson_scripts[0].infotext_fields,
                   {INFOTEXT_KEY: p.extra_generation_params[INFOTEXT_KEY], "Steps": "20"})
    n = len(ARG_NAMES)
    assert values[:5] == args[:5] and values[n:] == values[:n]
    assert params_from_args(values[:n]) == params_from_args(args)


def test_send_to_img2img_copies_every_control():
    """"Send to img2img" (infotext_utils.py lines 169-173) copies the source tab's fields whose name, a
    string, is in paste_field_names into the target tab's fields of the same name."""
    txt2img, source = make_runner(False)
    img2img, target = make_runner(True)
    names = txt2img.alwayson_scripts[0].paste_field_names
    copied_from = [field for field, name in txt2img.alwayson_scripts[0].infotext_fields if name in names]
    copied_to = [field for field, name in img2img.alwayson_scripts[0].infotext_fields if name in names]
    assert copied_from == source and copied_to == target


def test_malformed_infotext_is_ignored_with_a_warning(caplog):
    runner, _ = make_runner()
    fields = runner.alwayson_scripts[0].infotext_fields
    with caplog.at_level(logging.WARNING, logger="skip_tuning"):
        values = paste(fields, {INFOTEXT_KEY: "rho_top=abc; rho_bottom=0.8"})
    assert values == [None] * 2 * len(ARG_NAMES)
    assert "ignoring the pasted value" in caplog.text
    assert paste(fields, {"Steps": "20"}) == [False] + [None] * (2 * len(ARG_NAMES) - 1)


class AxisOption:
    """Mirrors A1111 scripts/xyz_grid.py AxisOption(label, type, apply, format_value, confirm, cost, choices, prepare)."""

    def __init__(self, label, type, apply, format_value=None, confirm=None, cost=0.0, choices=None, prepare=None):
        self.label, self.type, self.apply = label, type, apply


def test_xyz_axes_register_once_and_each_cell_carries_its_own_value():
    xyz = types.SimpleNamespace(AxisOption=AxisOption, axis_options=[AxisOption("Nothing", str, None)])
    entry = scripts.ScriptClassData(type("Script", (), {"__module__": "xyz_grid.py"}), "xyz_grid.py", "", xyz)
    scripts.scripts_data.append(entry)
    try:
        script_callbacks.before_ui_callback()
        script_callbacks.before_ui_callback()
    finally:
        scripts.scripts_data.remove(entry)
    labels = [o.label for o in xyz.axis_options]
    assert labels.count("[Skip Tuning] rho_bottom") == 1 and len(labels) == 5
    axis = next(o for o in xyz.axis_options if o.label == "[Skip Tuning] rho_bottom")
    runner, _ = make_runner()
    base = processing.StableDiffusionProcessingTxt2Img(LdmModel(), runner, OFF)
    cells = []
    for value in (0.9, 0.7):
        cell = copy.copy(base)  # xyz_grid gives each cell a copy of p
        cell.extra_generation_params = {}
        axis.apply(cell, value, [0.9, 0.7])
        runner.process(cell)
        cells.append(cell.extra_generation_params[INFOTEXT_KEY])
    assert cells == ["rho_top=1; rho_bottom=0.9; start=0; end=1", "rho_top=1; rho_bottom=0.7; start=0; end=1"]
    assert not hasattr(base, "skip_tuning_xyz")


def test_api_args_positional_and_dict():
    assert params_from_args(ON) == SkipParams(True, 1.0, 0.6, 0.0, 1.0, "")
    assert params_from_args([{"rho_bottom": 0.7}, 1.0, 0.8]) == SkipParams(True, 1.0, 0.7)
    assert params_from_args([{"enabled": False}]) == SkipParams(False)
    assert params_from_args([True, 1, 0]) == SkipParams(True, 1.0, 0.0)


BAD_ARGS = [
    ([{"rho_bottm": 0.7}], "rho_bottm"),
    ([{"rho_bottom": "0.7"}], "rho_bottom"),
    ([True, 1.0, float("nan")], "rho_bottom"),
    ([True, -1.0, 0.8], "rho_top"),
    ([True, 1.0, 4.0], "rho_bottom"),
    (["yes", 1.0, 0.8], "enabled"),
    ([True, 1.0, 0.8, 0.9, 0.1], "start_percent"),
    ([True, 1.0, 0.8, -0.1, 1.0], "start_percent"),
    ([True, 1.0, 0.8, 0.0, 2.0], "end_percent"),
    ([True, 1.0, 0.8, 0.0, 1.0, 5], "block_rhos"),
    ([True, 1.0, 0.8, 0.0, 1.0, "0.8, x"], "block_rhos"),
    ([True, 1.0, 0.8, 0.0, 1.0, "0.8, 9"], "block_rhos[1]"),
    ([True, 1.0, 0.8, 0.0, 1.0, "", "extra"], "at most 6"),
    ([{"enabled": True, "rho_top": None}], "rho_top"),
]


@pytest.mark.parametrize("args,field", BAD_ARGS, ids=[str(i) for i in range(len(BAD_ARGS))])
def test_bad_api_args_name_the_field(args, field):
    with pytest.raises(SkipTuningError, match=field.replace("[", r"\[").replace("]", r"\]")):
        params_from_args(args)


@pytest.mark.parametrize("model_class", [LdmModel, ForgeModel])
def test_bad_api_value_fails_the_generation_with_the_field(model_class):
    """The host catches exceptions raised in `process` (A1111 1.10.1 modules/scripts.py 828-834) and would
    return an untuned image; the error has to reach the caller through the generation itself."""
    with pytest.raises(SkipTuningError, match="rho_bottom"):
        generate(model_class(), [{"rho_bottom": 9}])


def test_wrong_block_count_fails_before_sampling_with_the_field_name():
    model = LdmModel()
    with pytest.raises(SkipTuningError, match="block_rhos has 2 values but this U-Net has 9 output blocks"):
        generate(model, [True, 1.0, 0.8, 0.0, 1.0, "0.8, 0.9"])
    assert hooks_left(model.model.diffusion_model) == 0


def test_tabs_do_not_share_settings():
    """txt2img and img2img scripts and two requests: each p keeps its own values."""
    txt_runner, _ = make_runner(False)
    img_runner, _ = make_runner(True)
    model = LdmModel()
    p1 = processing.StableDiffusionProcessingTxt2Img(model, txt_runner, [True, 1.0, 0.5, 0.0, 1.0, ""])
    p2 = processing.StableDiffusionProcessingTxt2Img(model, img_runner, [True, 0.9, 1.2, 0.0, 1.0, ""])
    txt_runner.process(p1)
    img_runner.process(p2)
    assert "rho_bottom=0.5" in p1.extra_generation_params[INFOTEXT_KEY]
    assert "rho_bottom=1.2" in p2.extra_generation_params[INFOTEXT_KEY]
    mutable = [k for k, v in vars(SkipTuningScript).items() if isinstance(v, (list, dict, set))]
    assert mutable == []


def test_settings_section_and_defaults():
    from sd_webui_ext.settings_ui import SECTION

    labels = {k: v for k, v in shared.opts.data_labels.items() if k.startswith("skip_tuning")}
    assert set(labels) == {"skip_tuning_default_rho_top", "skip_tuning_default_rho_bottom",
                           "skip_tuning_in_hires_pass"}
    assert all(info.section == SECTION for info in labels.values())
    shared.opts.data["skip_tuning_default_rho_bottom"] = 0.7
    try:
        _, controls = make_runner()
        assert controls[2].value == 0.7
    finally:
        shared.opts.data["skip_tuning_default_rho_bottom"] = 0.8


def test_tab_builds_and_its_picture_follows_the_settings():
    from sd_webui_ext.settings_ui import preview

    ((tab, title, elem_id),) = script_callbacks.ui_tabs_callback()
    assert isinstance(tab, gr.Blocks) and title == "Skip Tuning"
    images = [gr.Image in type(block).__mro__ for block in tab.blocks.values()]
    assert any(images)
    first, _ = preview(12, 1.0, 0.8, 0.0, 1.0, "")
    second, _ = preview(12, 1.0, 0.5, 0.0, 1.0, "")
    third, _ = preview(12, 1.0, 0.5, 0.2, 0.6, "")
    a, b, c = (np.asarray(im, dtype=np.int16) for im in (first, second, third))
    assert np.abs(a - b).sum() > 0 and np.abs(b - c).sum() > 0
    kept, message = preview(12, 1.0, 0.5, 0.8, 0.2, "")
    assert "start_percent" in message
