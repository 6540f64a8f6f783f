"""Runs the WebUI extension's Forge patch on reForge's or Forge Classic's own backend; prints what it measured
as JSON. Run by tests/test_forge_family.py in a process of its own (these forks' `ldm_patched` imports their
`modules.shared`, and the other WebUI tests import A1111's stand-in `modules`):
`python tests/forge_family_harness.py ROOT`.

Real, from ../shared/hosts/: `ldm_patched` (the tiny SD1-shaped U-Net built through its `supported_models.SD15`
and `BaseModel`, `model_sampling`, `samplers.sampling_function`), `modules_forge/unet_patcher.py` (UnetPatcher)
and `modules_forge/forge_sampler.py` (`cond_from_a1111_to_patched_ldm`, how each denoiser call's conditions are
built). Stand-ins: `modules.shared` (only its `opts` is read on this path) and `p`, whose `forge_objects` are
reset before each sampling pass as the forks' `modules/processing.py` does (reForge 1458-1466, first pass;
1568-1577, hires pass) before `process_before_every_sampling` patches them; the Script layer above it needs
the forks' gradio 4 WebUI (tests/test_webui_script.py runs it on A1111's call order).
"""
import json
import sys
import types
from pathlib import Path

import numpy as np
import torch

ROOT, REPO = Path(sys.argv[1]), Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(REPO), str(REPO / "tests")]
torch.set_num_threads(1)

from skip_tuning_lab.comfy_host import boot_comfy, declare_torchvision_ops  # noqa: E402

declare_torchvision_ops()
import modules  # noqa: E402  (the fork's)

shared = types.ModuleType("modules.shared")
shared.opts = types.SimpleNamespace()
sys.modules["modules.shared"], modules.shared = shared, shared

from ldm_patched.modules.args_parser import args  # noqa: E402

args.always_cpu = True  # ldm_patched/modules/model_management.py picks the device from these at import
import ldm_patched.modules.supported_models as supported_models  # noqa: E402
from ldm_patched.modules.samplers import sampling_function  # noqa: E402
from modules_forge.forge_sampler import cond_from_a1111_to_patched_ldm  # noqa: E402
from modules_forge.unet_patcher import UnetPatcher  # noqa: E402

boot_comfy()  # tiny_models' SD1 layout and seeded weights (ComfyUI's classes are not used here)
from skip_tuning_core.patcher import SCALES  # noqa: E402
from sd_webui_ext.forge import patch_forge_unet  # noqa: E402
from sd_webui_ext.params import SkipParams  # noqa: E402
from tiny_models import CONTEXT_DIM, SD1_UNET, fill_weights  # noqa: E402

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


def hand_patched(patcher, rhos):
    reference = patcher.clone()
    reference.set_model_output_block_patch(lambda h, hsp, options: (h, hsp * float(rhos[options["block"][1]])))
    return reference


class ForgeObjects(types.SimpleNamespace):
    def shallow_copy(self):
        return ForgeObjects(**vars(self))


def sampling_pass(p, params):
    """modules/processing.py: forge_objects reset from the LoRA-applied copy, then the scripts' hook."""
    p.sd_model.forge_objects = p.sd_model.forge_objects_after_applying_lora.shallow_copy()
    patch_forge_unet(p, params)
    return p.sd_model.forge_objects.unet


def max_diff(a, b):
    return float((a - b).abs().max())


base = fork_unet()
blocks = len(base.model.diffusion_model.output_blocks)
rhos = np.linspace(0.6, 1.0, blocks)  # deepest block first
base_options = repr(base.model_options)
untuned = {cfg: denoise(base, 5.0, cfg) for cfg in (1.0, 4.0)}
p = types.SimpleNamespace(sd_model=types.SimpleNamespace(
    forge_objects_after_applying_lora=ForgeObjects(unet=base)), comments=[])
p.comment = p.comments.append
params = SkipParams(enabled=True, rho_top=1.0, rho_bottom=0.6)
first = sampling_pass(p, params)
hires = sampling_pass(p, params)
results = {"blocks": blocks, "schedule_has_predictor": hasattr(base.model, "predictor")}
for cfg in (1.0, 4.0):
    expected = denoise(hand_patched(base, rhos), 5.0, cfg)
    results[f"first_vs_reference_cfg{cfg:g}"] = max_diff(denoise(first, 5.0, cfg), expected)
    results[f"hires_vs_reference_cfg{cfg:g}"] = max_diff(denoise(hires, 5.0, cfg), expected)
    results[f"reference_vs_untuned_cfg{cfg:g}"] = max_diff(expected, untuned[cfg])
results["base_options_unchanged"] = repr(base.model_options) == base_options
results["base_after_vs_untuned"] = max_diff(denoise(base, 5.0), untuned[1.0])
identity = sampling_pass(p, SkipParams(enabled=True, rho_top=1.0, rho_bottom=1.0))
results["rho_one_vs_untuned"] = max_diff(denoise(identity, 5.0), untuned[1.0])

schedule = base.model.model_sampling
high, low = float(schedule.percent_to_sigma(0.3)), float(schedule.percent_to_sigma(0.7))
ranged = sampling_pass(p, SkipParams(enabled=True, rho_top=1.0, rho_bottom=0.5, start_percent=0.3, end_percent=0.7))
scaled = []  # per model call: did the patch get factors?
ranged.set_model_output_block_patch(
    lambda h, hsp, options: (options["block"][1] == 0 and scaled.append(SCALES in options), (h, hsp))[1])
sigmas = [float(s) for s in schedule.sigmas[::97]] + [high * 1.01, high * 0.99, low * 1.01, low * 0.99]
for sigma in sigmas:
    denoise(ranged, sigma)
results["range_scaled"] = scaled
results["range_expected"] = [low <= sigma <= high for sigma in sigmas]

flux_like = types.SimpleNamespace(forge_objects_after_applying_lora=ForgeObjects(unet=types.SimpleNamespace(
    model=types.SimpleNamespace(diffusion_model=torch.nn.Linear(2, 2)), model_options={})))
q = types.SimpleNamespace(sd_model=flux_like, comments=[])
q.comment = q.comments.append
p_unsupported = sampling_pass(q, params)
results["unsupported_comment"] = q.comments
results["unsupported_left_alone"] = p_unsupported is flux_like.forge_objects_after_applying_lora.unet
print(json.dumps(results))
