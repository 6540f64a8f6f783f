"""Runs the WebUI extension on reForge's or Forge Classic's own backend; prints what it measured
as JSON. Run by tests/test_forge_family.py in a process of its own (these forks' `ldm_patched` imports their
`modules.shared`, and the other WebUI tests import A1111's stand-in `modules`):
`python tests/forge_family_harness.py ROOT`.

Real, from ../shared/hosts/: `ldm_patched` (the tiny SD1-shaped U-Net built through its `supported_models.SD15`
and `BaseModel`, `model_sampling`, `samplers.sampling_function`), `modules_forge/unet_patcher.py` (UnetPatcher)
and `modules_forge/forge_sampler.py` (`cond_from_a1111_to_patched_ldm`, how each denoiser call's conditions are
built). The extension is the WebUI's: scripts/skip_tuning.py, loaded by path, its `process` and
`process_before_every_sampling` called by a ScriptRunner in the order the forks' `modules/processing.py` calls
them. Stand-ins: the forks' `modules.scripts`, `shared`, `script_callbacks` and `ui_components` (A1111's, from
tests/webui_standin: the forks keep that API, and their own files import the whole gradio 4 WebUI) and `p`.
"""
import json
import sys
import types
from pathlib import Path

import numpy as np

from harness import enter_host, load_entry_point, stand_in_from_a1111

enter_host(Path(sys.argv[1]))
import torch  # noqa: E402

from skip_tuning_lab.comfy_host import boot_comfy  # noqa: E402

# The forks keep A1111's script API; their own modules/scripts.py, shared.py and ui_components.py import the
# whole gradio 4 WebUI, so A1111's stand-ins serve (ScriptRunner: A1111 1.10.1 scripts.py call order;
# processing: Forge's ForgeObjects).
shared, scripts = stand_in_from_a1111("modules.shared"), stand_in_from_a1111("modules.scripts")
for leaf in ("script_callbacks", "ui_components", "processing"):
    stand_in_from_a1111(f"modules.{leaf}")
from ldm_patched.modules.args_parser import args  # noqa: E402

args.always_cpu = True  # ldm_patched/modules/model_management.py picks the device from these at import
import ldm_patched.modules.supported_models as supported_models  # noqa: E402
from ldm_patched.modules.samplers import sampling_function  # noqa: E402
from modules_forge.forge_sampler import cond_from_a1111_to_patched_ldm  # noqa: E402
from modules_forge.unet_patcher import UnetPatcher  # noqa: E402

boot_comfy()  # tiny_models' SD1 layout and seeded weights (ComfyUI's classes are not used here)
from skip_tuning_core.patcher import SCALES  # noqa: E402
from test_forge_backend import hand_patched  # noqa: E402
from tiny_models import CONTEXT_DIM, SD1_UNET, fill_weights  # noqa: E402

ForgeObjects = sys.modules["modules.processing"].ForgeObjects

CPU = torch.device("cpu")


def fork_unet():
    config = supported_models.SD15(dict(SD1_UNET))
    config.manual_cast_dtype = None
    if hasattr(config, "set_inference_dtype"):
        config.set_inference_dtype(torch.float32, None)
    model = config.get_model({}, device=CPU)
    fill_weights(model.diffusion_model, seed=0)
    model.eval()
    return UnetPatcher(model, load_device=CPU, offload_device=CPU)


def denoise(patcher, sigma, cfg=1.0, seed=0):
    """One denoiser call as the forks' forge_sample makes it (forge_sampler.py: conditions, then sampling_function)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, 16, 16, generator=generator)
    cond = cond_from_a1111_to_patched_ldm(torch.randn(2, 7, CONTEXT_DIM, generator=generator))
    uncond = cond_from_a1111_to_patched_ldm(torch.randn(2, 7, CONTEXT_DIM, generator=generator))
    with torch.no_grad():
        return sampling_function(patcher.model, x, torch.full((2,), sigma), uncond, cond, cfg, patcher.model_options)


runner = scripts.ScriptRunner([load_entry_point().SkipTuningScript])
runner.setup_ui()


def generation(args, unet, hires=False):
    """One generation in the order the forks' modules/processing.py runs it: the scripts' `process`, then
    before each sampling pass forge_objects reset from the LoRA-applied copy and `process_before_every_sampling`
    (reForge 1458-1466; hires pass 1568-1577, with `is_hr_pass` set). The U-Net patcher of each pass."""
    loaded = ForgeObjects(unet)  # reForge modules_forge/forge_loader.py 445-447
    model = types.SimpleNamespace(forge_objects=loaded, forge_objects_after_applying_lora=loaded.shallow_copy())
    p = types.SimpleNamespace(sd_model=model, script_args=list(args), extra_generation_params={}, comments=[],
                              is_hr_pass=False)
    p.comment = p.comments.append
    runner.process(p)
    passes = []
    for p.is_hr_pass in ([False, True] if hires else [False]):
        p.sd_model.forge_objects = p.sd_model.forge_objects_after_applying_lora.shallow_copy()
        runner.process_before_every_sampling(p, x=None, noise=None, c=None, uc=None)
        passes.append(p.sd_model.forge_objects.unet)
    return p, passes


def max_diff(a, b):
    return float((a - b).abs().max())


base = fork_unet()
blocks = len(base.model.diffusion_model.output_blocks)
rhos = np.linspace(0.6, 1.0, blocks)  # deepest block first
base_options = repr(base.model_options)
untuned = {cfg: denoise(base, 5.0, cfg) for cfg in (1.0, 4.0)}
ON = [True, 1.0, 0.6, 0.0, 1.0, ""]
p, (first, hires) = generation(ON, base, hires=True)
results = {"blocks": blocks, "schedule_has_predictor": hasattr(base.model, "predictor"),
           "infotext": p.extra_generation_params.get("Skip Tuning")}
for cfg in (1.0, 4.0):
    expected = denoise(hand_patched(base, rhos), 5.0, cfg)
    results[f"first_vs_reference_cfg{cfg:g}"] = max_diff(denoise(first, 5.0, cfg), expected)
    results[f"hires_vs_reference_cfg{cfg:g}"] = max_diff(denoise(hires, 5.0, cfg), expected)
    results[f"reference_vs_untuned_cfg{cfg:g}"] = max_diff(expected, untuned[cfg])
results["base_options_unchanged"] = repr(base.model_options) == base_options
results["base_after_vs_untuned"] = max_diff(denoise(base, 5.0), untuned[1.0])
_, (identity,) = generation([True, 1.0, 1.0, 0.0, 1.0, ""], base)
results["rho_one_vs_untuned"] = max_diff(denoise(identity, 5.0), untuned[1.0])
_, (off,) = generation([False] + ON[1:], base)
results["off_is_base"] = off is base
shared.opts.data["skip_tuning_in_hires_pass"] = False
_, (first_only, hires_off) = generation(ON, base, hires=True)
del shared.opts.data["skip_tuning_in_hires_pass"]
results["setting_off"] = dict(first_vs_reference=max_diff(denoise(first_only, 5.0), denoise(hand_patched(base, rhos), 5.0)),
                              hires_is_base=hires_off is base)

schedule = base.model.model_sampling
high, low = float(schedule.percent_to_sigma(0.3)), float(schedule.percent_to_sigma(0.7))
_, (ranged,) = generation([True, 1.0, 0.5, 0.3, 0.7, ""], base)
scaled = []  # per model call: did the patch get a factor other than 1?
ranged.set_model_output_block_patch(
    lambda h, hsp, options: (options["block"][1] == 0 and scaled.append(any(float(f) != 1.0 for f in options[SCALES])), (h, hsp))[1])
sigmas = [float(s) for s in schedule.sigmas[::97]] + [high * 1.01, high * 0.99, low * 1.01, low * 0.99]
for sigma in sigmas:
    denoise(ranged, sigma)
results["range_scaled"] = scaled
results["range_expected"] = [low <= sigma <= high for sigma in sigmas]

flux_like = types.SimpleNamespace(model=types.SimpleNamespace(diffusion_model=torch.nn.Linear(2, 2)), model_options={})
q, (left,) = generation(ON, flux_like)
results["unsupported_comment"] = q.comments
results["unsupported_left_alone"] = left is flux_like
results["unsupported_infotext"] = q.extra_generation_params.get("Skip Tuning")
print(json.dumps(results))
