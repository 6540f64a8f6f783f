"""Skip Tuning on Forge main's own backend (../shared/hosts/forge-dfdcbab6.tar.gz): its UnetPatcher, its KModel
with the `predictor` schedule, its IntegratedUNet2DConditionModel and its sampling_function, on CPU with random
weights. The patch contract is ComfyUI's; what differs is where the schedule lives and that the range gate runs
from a `model_function_wrapper`, so these run on the real code."""
import functools
import sys
import types

import numpy as np
import pytest
import torch

from skip_tuning_core import skip_tuned
from skip_tuning_core.patcher import SCALES
from skip_tuning_lab.hosts import host_tree
from tiny_models import CONTEXT_DIM, SD1_UNET, fill_weights

# Forge main (the hosts README gives the commit); "forge-" alone would also match Forge Classic.
FORGE_MAIN = "forge-dfdcbab6"
UNET_KEYS = ("in_channels", "out_channels", "model_channels", "num_res_blocks", "channel_mult", "transformer_depth",
             "transformer_depth_output", "transformer_depth_middle", "context_dim", "num_heads", "num_head_channels",
             "use_spatial_transformer", "use_linear_in_transformer", "adm_in_channels")


@pytest.fixture(scope="module")
def forge():
    try:
        root = host_tree(FORGE_MAIN)
    except FileNotFoundError as missing:
        pytest.skip(f"no Forge backend to test on: {missing}")
    # backend/modules/k_prediction.py line 6 imports diffusers' Flux pipeline for `calculate_shift` (Flux
    # schedules only); that module imports transformers' CLIPImageProcessor, which needs torchvision's compiled
    # ops, and PyPI's torchvision cannot load them beside the CPU torch here. SD schedules never call it.
    flux = types.ModuleType("diffusers.pipelines.flux.pipeline_flux")
    flux.calculate_shift = None
    saved_flux = sys.modules.get(flux.__name__)
    sys.modules[flux.__name__] = flux
    sys.path.insert(0, str(root))
    try:
        from backend.args import args
        args.always_cpu = True  # backend/memory_management.py picks the device from these at import
        from backend.modules.k_model import KModel
        from backend.modules.k_prediction import Prediction
        from backend.nn.unet import IntegratedUNet2DConditionModel
        from backend.patcher.unet import UnetPatcher
        from backend.sampling import condition, sampling_function
    finally:
        sys.path.remove(str(root))
        if saved_flux is None:
            sys.modules.pop(flux.__name__)
        else:
            sys.modules[flux.__name__] = saved_flux
    return types.SimpleNamespace(KModel=KModel, Prediction=Prediction, UNet=IntegratedUNet2DConditionModel,
                                 UnetPatcher=UnetPatcher, condition=condition, sampling=sampling_function)


def forge_unet(forge, prediction_type="epsilon"):
    """A UnetPatcher around a tiny SD1-shaped U-Net, wired as backend/loader.py wires a loaded one."""
    unet = forge.UNet(**{key: SD1_UNET[key] for key in UNET_KEYS})
    fill_weights(unet, seed=0)
    unet.eval()
    unet.storage_dtype = unet.computation_dtype = torch.float32
    unet.load_device = unet.initial_device = unet.offload_device = torch.device("cpu")
    predictor = forge.Prediction(prediction_type=prediction_type)
    return forge.UnetPatcher.from_model(unet, diffusers_scheduler=None, config=None, k_predictor=predictor)


def denoise(forge, patcher, sigma, seed=0, cfg=1.0):
    """One denoiser call as Forge's sampler makes it (sampling_function_inner with the patcher's options)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, 16, 16, generator=generator)
    cond = forge.condition.compile_conditions(torch.randn(2, 7, CONTEXT_DIM, generator=generator))
    uncond = forge.condition.compile_conditions(torch.randn(2, 7, CONTEXT_DIM, generator=generator))
    with torch.no_grad():
        return forge.sampling.sampling_function_inner(patcher.model, x, torch.full((2,), sigma), uncond, cond, cfg,
                                                      patcher.model_options)


def hand_patched(patcher, rhos):
    """The reference: a clone whose output-block patch scales skip j by rhos[j], with no gate and no wrapper."""
    reference = patcher.clone()
    reference.set_model_output_block_patch(lambda h, hsp, options: (h, hsp * float(rhos[options["block"][1]])))
    return reference


@pytest.mark.parametrize("cfg", [1.0, 4.0])
def test_patched_forge_unet_equals_the_hand_reference(forge, cfg):
    patcher = forge_unet(forge)
    rhos = np.linspace(0.6, 1.0, len(patcher.model.diffusion_model.output_blocks))  # deepest block first
    tuned = skip_tuned(patcher, rho_top=1.0, rho_bottom=0.6)
    expected = denoise(forge, hand_patched(patcher, rhos), 5.0, cfg=cfg)
    untuned = denoise(forge, patcher, 5.0, cfg=cfg)
    torch.testing.assert_close(denoise(forge, tuned, 5.0, cfg=cfg), expected, rtol=1e-6, atol=1e-6)
    assert (expected - untuned).abs().max() > 1e-3


def test_a_compiled_apply_model_without_a_bound_model_is_tuned(forge):
    """Forge Neo's built-in Torch Compile (extensions-builtin/sd_forge_compile) replaces the model's
    `apply_model` with a compiled function that is bound to nothing; the gate must still find the schedule."""
    patcher = forge_unet(forge)
    rhos = np.linspace(0.6, 1.0, len(patcher.model.diffusion_model.output_blocks))
    expected = denoise(forge, hand_patched(patcher, rhos), 5.0, cfg=4.0)
    bound = patcher.model.apply_model
    patcher.model.apply_model = functools.wraps(bound)(lambda *args, **kwargs: bound(*args, **kwargs))
    try:
        tuned = denoise(forge, skip_tuned(patcher, function_wrapper=True, rho_top=1.0, rho_bottom=0.6), 5.0, cfg=4.0)
    finally:
        del patcher.model.apply_model
    torch.testing.assert_close(tuned, expected, rtol=1e-6, atol=1e-6)


def test_rho_one_is_bit_identical_and_the_original_patcher_keeps_its_options(forge):
    patcher = forge_unet(forge)
    before = repr(patcher.model_options)
    untuned = denoise(forge, patcher, 3.0)
    assert torch.equal(denoise(forge, skip_tuned(patcher, rho_top=1.0, rho_bottom=1.0), 3.0), untuned)
    denoise(forge, skip_tuned(patcher, rho_top=1.0, rho_bottom=0.5), 3.0)
    assert repr(patcher.model_options) == before
    assert torch.equal(denoise(forge, patcher, 3.0), untuned)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_the_range_is_resolved_on_the_predictor_of_the_model_sampled(forge, prediction_type):
    # percent_to_sigma lives on Forge main's `predictor`; the gate must read the schedule of this very model.
    patcher = forge_unet(forge, prediction_type)
    predictor = patcher.model.predictor
    high, low = predictor.percent_to_sigma(0.3), predictor.percent_to_sigma(0.7)
    tuned = skip_tuned(patcher, rho_top=1.0, rho_bottom=0.5, start_percent=0.3, end_percent=0.7)
    scaled = []  # per model call: did the patch get a factor other than 1?
    tuned.set_model_output_block_patch(
        lambda h, hsp, options: (options["block"][1] == 0 and scaled.append(any(float(f) != 1.0 for f in options[SCALES])), (h, hsp))[1])
    sigmas = [float(s) for s in predictor.sigmas[::97]] + [high * 1.01, high * 0.99, low * 1.01, low * 0.99]
    for sigma in sigmas:
        denoise(forge, tuned, sigma)
    assert scaled == [low <= sigma <= high for sigma in sigmas]
    assert any(scaled) and not all(scaled)


def test_a_model_function_wrapper_set_before_is_kept(forge):
    # Forge has no APPLY_MODEL wrappers: Skip Tuning wraps the model function and must keep another one in place.
    patcher = forge_unet(forge)
    seen = []

    def other_wrapper(apply_model, args):
        seen.append(float(args["timestep"].max()))
        return apply_model(args["input"], args["timestep"], **args["c"]) * 0.5

    patcher.set_model_unet_function_wrapper(other_wrapper)
    rhos = np.linspace(0.7, 1.0, len(patcher.model.diffusion_model.output_blocks))
    expected = denoise(forge, hand_patched(patcher, rhos), 2.0)
    seen.clear()
    tuned = denoise(forge, skip_tuned(patcher, rho_top=1.0, rho_bottom=0.7), 2.0)
    torch.testing.assert_close(tuned, expected, rtol=1e-6, atol=1e-6)
    assert seen == [pytest.approx(2.0)]


def test_the_webui_script_patches_forge_mains_unet_in_its_processing_order(forge):
    """The WebUI script on Forge main's real UnetPatcher, called as Forge main's modules/processing.py calls it:
    the scripts' `process`; before the first pass forge_objects reset from the LoRA-applied copy, then
    `process_before_every_sampling` (1373-1377); around the hires pass `process_before_every_sampling`, the
    reset, and `process_before_every_sampling` again (1508-1522). Every pass is tuned exactly once; the hires
    setting leaves only that pass out. The script API above it is A1111's stand-in (Forge's needs gradio 4)."""
    from test_webui_script import SkipTuningScript  # first: it puts A1111's stand-in `modules` on sys.path

    from modules import processing, scripts, shared

    runner = scripts.ScriptRunner([SkipTuningScript])
    runner.setup_ui()
    base = forge_unet(forge)
    rhos = np.linspace(0.6, 1.0, len(base.model.diffusion_model.output_blocks))
    expected, untuned = denoise(forge, hand_patched(base, rhos), 4.0), denoise(forge, base, 4.0)

    def generation():
        loaded = processing.ForgeObjects(base)  # backend/loader.py: both set when a checkpoint loads
        p = types.SimpleNamespace(sd_model=types.SimpleNamespace(forge_objects=loaded,
                                                                 forge_objects_after_applying_lora=loaded.shallow_copy()),
                                  script_args=[True, 1.0, 0.6, 0.0, 1.0, ""], extra_generation_params={}, comments=[],
                                  is_hr_pass=False)
        runner.process(p)
        p.sd_model.forge_objects = p.sd_model.forge_objects_after_applying_lora.shallow_copy()
        runner.process_before_every_sampling(p, x=None, noise=None, c=None, uc=None)
        first = p.sd_model.forge_objects.unet
        p.is_hr_pass = True
        runner.process_before_every_sampling(p, x=None, noise=None, c=None, uc=None)
        p.sd_model.forge_objects = p.sd_model.forge_objects_after_applying_lora.shallow_copy()
        runner.process_before_every_sampling(p, x=None, noise=None, c=None, uc=None)
        return first, p.sd_model.forge_objects.unet

    first, hires = generation()
    assert torch.equal(denoise(forge, first, 4.0), expected) and torch.equal(denoise(forge, hires, 4.0), expected)
    assert (expected - untuned).abs().max() > 1e-3
    shared.opts.data["skip_tuning_in_hires_pass"] = False
    try:
        first, hires = generation()
    finally:
        del shared.opts.data["skip_tuning_in_hires_pass"]
    assert torch.equal(denoise(forge, first, 4.0), expected) and hires is base
