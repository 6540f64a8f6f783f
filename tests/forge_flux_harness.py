"""Runs Residual Tuning (the WebUI script) on Forge main's own Flux; prints what it measured as JSON. Run by
tests/test_forge_flux.py in Forge main's venv (.venv-forge: its pinned diffusers 0.31, whose flow-matching shift
its `PredictionFlux` calls unbound): `python tests/forge_flux_harness.py ROOT`.

Real, from ../shared/hosts/ (Forge main): backend/nn/flux.py (a tiny IntegratedFluxTransformer2DModel with
random weights), backend/modules/k_model.py (KModel), k_prediction.py (PredictionFlux), backend/patcher/unet.py
(UnetPatcher) and backend/sampling/ (condition.compile_conditions, sampling_function_inner: each denoiser
call). The extension is the WebUI's: scripts/residual_tuning.py, loaded by path, its `process` called by a
ScriptRunner before `p.sample`, as Forge main's modules/processing.py does. Stand-ins: A1111's `modules.scripts`,
`shared`, `script_callbacks`, `ui_components` and `processing` (tests/webui_standin: Forge keeps that API, and
its own files import the whole gradio 4 WebUI), and `p`, whose `sample` makes the denoiser calls of a run.
"""
import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np

from harness import REPO, enter_host, hooks_left, stand_in_from_a1111

enter_host(Path(sys.argv[1]))
import torch  # noqa: E402

scripts = stand_in_from_a1111("modules.scripts")
for leaf in ("shared", "script_callbacks", "ui_components", "processing"):
    stand_in_from_a1111(f"modules.{leaf}")
from backend.args import args  # noqa: E402

args.always_cpu = True  # backend/memory_management.py picks the device from these at import
from backend.modules.k_prediction import PredictionFlux  # noqa: E402
from backend.nn.flux import IntegratedFluxTransformer2DModel  # noqa: E402
from backend.nn.unet import IntegratedUNet2DConditionModel  # noqa: E402
from backend.patcher.unet import UnetPatcher  # noqa: E402
from backend.sampling import condition, sampling_function  # noqa: E402

ForgeObjects = sys.modules["modules.processing"].ForgeObjects
CPU = torch.device("cpu")


def wired(model, predictor):
    """A UnetPatcher around `model`, wired as backend/loader.py wires a loaded one."""
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.1)
    model.eval()
    model.storage_dtype = model.computation_dtype = torch.float32
    model.load_device = model.initial_device = model.offload_device = CPU
    return UnetPatcher.from_model(model, diffusers_scheduler=None, config=None, k_predictor=predictor)


def tiny_flux():
    return wired(IntegratedFluxTransformer2DModel(
        in_channels=4, vec_in_dim=12, context_in_dim=24, hidden_size=32, mlp_ratio=2.0, num_heads=2, depth=2,
        depth_single_blocks=3, axes_dim=[2, 6, 8], theta=10000, qkv_bias=True, guidance_embed=False),
        PredictionFlux(mu=1.0))


def denoise(patcher, sigma, seed=0, cfg=1.0):
    """One denoiser call as Forge's sampler makes it (sampling_function_inner with the patcher's options)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, 8, 8, generator=generator)
    cond = condition.compile_conditions({"crossattn": torch.randn(2, 5, 24, generator=generator),
                                         "vector": torch.randn(2, 12, generator=generator)})
    uncond = condition.compile_conditions({"crossattn": torch.randn(2, 5, 24, generator=generator),
                                           "vector": torch.randn(2, 12, generator=generator)})
    with torch.no_grad():
        return sampling_function.sampling_function_inner(patcher.model, x, torch.full((2,), sigma), uncond, cond,
                                                         cfg, patcher.model_options)


SIGMAS = (1.0, 0.8, 0.55, 0.45, 0.25, 0.1)


def run(patcher, cfg=1.0):
    return torch.stack([denoise(patcher, sigma, cfg=cfg) for sigma in SIGMAS])


def hand_hooks(dit, rhos):
    """rho * input + (output - input) on each block, with plain torch hooks: double blocks take img= and txt=
    and return (img, txt); single blocks take x first and return it."""
    handles = []
    for block, rho in zip(list(dit.double_blocks) + list(dit.single_blocks), rhos):
        seen = {}

        def keep(module, args, kwargs, seen=seen):
            seen["inputs"] = (kwargs["img"], kwargs["txt"]) if "img" in kwargs else (args[0],)

        def scale(module, args, kwargs, out, seen=seen, rho=float(rho)):
            outs = out if isinstance(out, tuple) else (out,)
            scaled = tuple(rho * x + (y - x) for y, x in zip(outs, seen["inputs"]))
            return scaled if isinstance(out, tuple) else scaled[0]
        handles += [block.register_forward_pre_hook(keep, with_kwargs=True),
                    block.register_forward_hook(scale, with_kwargs=True)]
    return handles


spec = importlib.util.spec_from_file_location("residual_tuning.py", REPO / "scripts" / "residual_tuning.py")
entry = importlib.util.module_from_spec(spec)
spec.loader.exec_module(entry)
runner = scripts.ScriptRunner([entry.ResidualTuningScript])
runner.setup_ui()


def generation(script_args, unet, cfg=1.0):
    """One generation: the scripts' `process`, then `p.sample`, inside which Forge resets forge_objects from
    the LoRA-applied copy (Forge main modules/processing.py 1373-1377) and samples. Returns (p, outputs or the
    error `p.sample` raised, hooks on the transformer while it sampled)."""
    loaded = ForgeObjects(unet)
    p = types.SimpleNamespace(sd_model=types.SimpleNamespace(forge_objects=loaded,
                                                             forge_objects_after_applying_lora=loaded.shallow_copy()),
                              script_args=list(script_args), extra_generation_params={}, comments=[], is_hr_pass=False)
    p.comment = p.comments.append
    during = []

    def sample():
        p.sd_model.forge_objects = p.sd_model.forge_objects_after_applying_lora.shallow_copy()
        during.append(hooks_left(unet.model.diffusion_model))
        return run(p.sd_model.forge_objects.unet, cfg)

    p.sample = sample
    try:
        runner.process(p)
        out = p.sample()
    except Exception as error:  # what the request would fail with
        out = f"{type(error).__name__}: {error}"
    return p, out, during


def max_diff(a, b):
    return float((a - b).abs().max())


base = tiny_flux()
dit = base.model.diffusion_model
count = len(dit.double_blocks) + len(dit.single_blocks)
results = {}
for cfg in (1.0, 4.0):
    untuned = run(base, cfg)
    handles = hand_hooks(dit, np.linspace(0.8, 1.0, count))  # first block 0.8 ... last 1.0, written out here
    reference = run(base, cfg)
    for handle in handles:
        handle.remove()
    p, tuned, during = generation([True, 0.8, 1.0, "all", 0.0, 1.0], base, cfg)
    results[f"cfg{cfg:g}"] = dict(vs_reference=max_diff(tuned, reference), vs_untuned=max_diff(tuned, untuned),
                                  hooks_during=during, hooks_after=hooks_left(dit),
                                  after_vs_untuned=max_diff(run(base, cfg), untuned))
results["infotext"] = p.extra_generation_params.get("Residual Tuning")
untuned = run(base)
_, identity, _ = generation([True, 1.0, 1.0, "all", 0.0, 1.0], base)
results["rho_one_vs_untuned"] = max_diff(identity, untuned)
_, off, during_off = generation([False, 0.8, 0.8, "all", 0.0, 1.0], base)
results["off"] = dict(vs_untuned=max_diff(off, untuned), hooks_during=during_off)
_, single, during_single = generation([{"rho_first": 0.8, "rho_last": 0.8, "blocks": "single"}], base)
results["single_hooks_during"] = during_single

# A range: Forge's PredictionFlux places percent p at sigma 1 - p (k_prediction.py percent_to_sigma); the
# blocks are scaled exactly at the calls inside, counted on the first single block's output.
_, ranged, _ = generation([True, 0.5, 0.5, "all", 0.3, 0.7], base)
results["range_changed"] = [max_diff(a, b) > 0 for a, b in zip(ranged, untuned)]
high, low = PredictionFlux(mu=1.0).percent_to_sigma(0.3), PredictionFlux(mu=1.0).percent_to_sigma(0.7)
results["range_expected"] = [low <= sigma <= high for sigma in SIGMAS]

_, refused, _ = generation([{"rho_first": 5.0}], base)
results["bad_value"] = refused
unet = wired(IntegratedUNet2DConditionModel(
    in_channels=4, out_channels=4, model_channels=32, num_res_blocks=1, channel_mult=(1, 2), transformer_depth=[0, 0],
    transformer_depth_output=[0, 0, 0, 0], context_dim=24, num_head_channels=16, use_spatial_transformer=True,
    transformer_depth_middle=0),
    PredictionFlux(mu=1.0))
q, _, during_unet = generation([True, 0.8, 0.8, "all", 0.0, 1.0], unet)
results["unet"] = dict(comments=q.comments, hooks_during=during_unet,
                       infotext=q.extra_generation_params.get("Residual Tuning"))
print(json.dumps(results))
