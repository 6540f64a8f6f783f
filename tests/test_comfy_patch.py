"""Skip Tuning nodes on the real ComfyUI: the math, the range gating and real sampling."""
import numpy as np
import pytest
import torch

import comfy.samplers
import nodes as comfy_nodes
from comfy.ldm.modules.diffusionmodules.openaimodel import forward_timestep_embed, timestep_embedding

from skip_tuning_core.patcher import TUNERS
from tiny_models import conditioning, tiny_model

LATENT = {"samples": torch.zeros(1, 4, 16, 16)}


def run_node(mappings, node_id, **inputs):
    """Run a node class the way ComfyUI's executor does for V3 (`execute`) or classic (`FUNCTION`) nodes."""
    cls = mappings[node_id]
    if hasattr(cls, "execute"):
        return tuple(cls.execute(**inputs).result)
    return getattr(cls(), cls.FUNCTION)(**inputs)


def reference_rhos(num_blocks, rho_top, rho_bottom):
    """The paper's ramp, written independently of the package: deepest output block first."""
    return np.linspace(rho_bottom, rho_top, num_blocks) if num_blocks > 1 else np.array([rho_bottom])


def reference_unet(unet, x, timesteps, context, y, rhos):
    """ComfyUI's UNetModel forward written out, with skip j scaled by rhos[j]."""
    emb = unet.time_embed(timestep_embedding(timesteps, unet.model_channels).to(x.dtype))
    if y is not None:
        emb = emb + unet.label_emb(y)
    skips, h = [], x
    for module in unet.input_blocks:
        h = forward_timestep_embed(module, h, emb, context, {})
        skips.append(h)
    h = forward_timestep_embed(unet.middle_block, h, emb, context, {})
    for j, module in enumerate(unet.output_blocks):
        h = torch.cat([h, skips.pop() * float(rhos[j])], dim=1)
        h = forward_timestep_embed(module, h, emb, context, {}, skips[-1].shape if skips else None)
    return unet.out(h)


def unet_call(model, x, sigma, context, y):
    """The U-Net's output within one model call made the way the sampler makes it (apply_model and its wrappers)."""
    options = model.model_options["transformer_options"].copy()
    options["sigmas"] = sigma
    options["wrappers"] = model.wrappers
    unet = model.model.diffusion_model
    outputs = []
    hook = unet.register_forward_hook(lambda module, args, output: outputs.append(output))
    try:
        sampling = model.get_model_object("model_sampling")
        noisy = x / sampling.calculate_input(sigma, torch.ones_like(x))  # the U-Net then sees exactly x
        model.model.apply_model(noisy, sigma, c_crossattn=context, y=y, transformer_options=options)
    finally:
        hook.remove()
    (output,) = outputs
    return output


@pytest.mark.parametrize("kind", ["sd1", "sdxl"])
@pytest.mark.parametrize("rho_top,rho_bottom", [(1.0, 0.7), (1.0, 1.4), (0.9, 0.5)])
def test_patched_unet_equals_reference(comfy_nodes_loaded, kind, rho_top, rho_bottom):
    """Every skip is scaled by the ramp; the rest of the forward is ComfyUI's own."""
    model = tiny_model(kind)
    (patched,) = run_node(comfy_nodes_loaded, "SkipTuning", model=model, rho_top=rho_top, rho_bottom=rho_bottom,
                          start_percent=0.0, end_percent=1.0)
    unet = model.model.diffusion_model
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 16, 16, generator=generator)
    context = torch.randn(2, 4, 32, generator=generator)
    y = torch.randn(2, unet.label_emb[0][0].in_features, generator=generator) if kind == "sdxl" else None
    sigma = torch.tensor([3.0, 3.0])
    timesteps = model.get_model_object("model_sampling").timestep(sigma)
    with torch.no_grad():
        got = unet_call(patched, x, sigma, context, y)
        want = reference_unet(unet, x, timesteps, context, y,
                              reference_rhos(len(unet.output_blocks), rho_top, rho_bottom))
        plain = unet_call(model, x, sigma, context, y)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert (got - plain).abs().max() > 1e-3, "the patch changed nothing"


def sample(model, seed=0, steps=4, cfg=1.0, sampler="euler", scheduler="normal", denoise=1.0, latent=None,
           kind="sd1", batch=1):
    """A real KSampler run (ComfyUI's common_ksampler) on the tiny model."""
    latent = latent or {"samples": torch.zeros(batch, 4, 16, 16)}
    positive = conditioning(kind, 1, batch)
    negative = conditioning(kind, 2, batch)
    (out,) = comfy_nodes.common_ksampler(model, seed, steps, cfg, sampler, scheduler, positive, negative, latent,
                                         denoise=denoise)
    return out["samples"]


@pytest.mark.parametrize("kind", ["sd1", "sdxl"])
def test_rho_one_is_bit_identical_and_base_model_unchanged(comfy_nodes_loaded, kind):
    """rho = 1 changes no bit; the model the user had gives the same bits after patched runs."""
    model = tiny_model(kind)
    before = sample(model, kind=kind, cfg=2.0)
    state = {k: v.clone() for k, v in model.model.diffusion_model.state_dict().items()}
    (identity,) = run_node(comfy_nodes_loaded, "SkipTuning", model=model, rho_top=1.0, rho_bottom=1.0,
                           start_percent=0.0, end_percent=1.0)
    assert torch.equal(sample(identity, kind=kind, cfg=2.0), before)
    (patched,) = run_node(comfy_nodes_loaded, "SkipTuning", model=model, rho_top=1.0, rho_bottom=0.6,
                          start_percent=0.0, end_percent=1.0)
    assert not torch.equal(sample(patched, kind=kind, cfg=2.0), before)
    assert torch.equal(sample(model, kind=kind, cfg=2.0), before)
    assert "output_block_patch" not in model.model_options["transformer_options"].get("patches", {})
    for key, value in model.model.diffusion_model.state_dict().items():
        assert torch.equal(value, state[key]), key


class SkipRecorder:
    """Two output-block patches around Skip Tuning: their ratio is the rho each call really applied."""

    def __init__(self):
        self.before, self.after = {}, {}

    def patch(self, store):
        def record(h, hsp, transformer_options):
            key = (float(transformer_options["sigmas"].max()), transformer_options["block"][1])
            store[key] = hsp.clone()
            return h, hsp
        return record

    def applied(self):
        """{sigma: [rho per block]} measured as after / before."""
        out = {}
        for (sigma, block), before in self.before.items():
            ratio = (self.after[(sigma, block)] / before).flatten()
            assert torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-5)
            out.setdefault(sigma, {})[block] = float(ratio[0])
        return {sigma: [blocks[j] for j in sorted(blocks)] for sigma, blocks in out.items()}


def recorded(mappings, node_id, model, **inputs):
    recorder = SkipRecorder()
    base = model.clone()
    base.set_model_output_block_patch(recorder.patch(recorder.before))
    (patched,) = run_node(mappings, node_id, model=base, **inputs)
    patched.set_model_output_block_patch(recorder.patch(recorder.after))
    return patched, recorder


@pytest.mark.parametrize("scheduler", ["normal", "karras", "simple", "exponential"])
@pytest.mark.parametrize("denoise", [1.0, 0.6])
def test_range_gates_exactly_the_steps_in_range(comfy_nodes_loaded, scheduler, denoise):
    """Scaling happens on a step exactly when its sigma lies in [sigma(end), sigma(start)]."""
    model = tiny_model("sd1")
    start, end = 0.3, 0.7
    patched, recorder = recorded(comfy_nodes_loaded, "SkipTuning", model, rho_top=1.0, rho_bottom=0.5,
                                 start_percent=start, end_percent=end)
    latent = {"samples": torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(3))}
    sample(patched, steps=10, scheduler=scheduler, denoise=denoise, latent=latent)
    sampling = model.get_model_object("model_sampling")
    high, low = sampling.percent_to_sigma(start), sampling.percent_to_sigma(end)
    ramp = reference_rhos(6, 1.0, 0.5)
    applied = recorder.applied()
    inside = [s for s in applied if low * (1 - 1e-4) <= s <= high * (1 + 1e-4)]
    assert inside and len(inside) < len(applied), "the range should cut the run"
    for sigma, rhos in applied.items():
        want = ramp if sigma in inside else np.ones(6)
        np.testing.assert_allclose(rhos, want, rtol=1e-5, err_msg=f"sigma={sigma}")


def test_overlapping_ranges_first_listed_wins(comfy_nodes_loaded):
    """Advanced ranges: each range its own values, the first listed wins on overlap, none outside."""
    model = tiny_model("sd1")
    ranges = "0.0-0.5: 1.0, 0.5\n0.4-0.8: 0.5, 0.5, 0.5, 0.5, 0.5, 2.0\n"
    patched, recorder = recorded(comfy_nodes_loaded, "SkipTuningAdvanced", model, rho_top=1.0, rho_bottom=0.8,
                                 block_rhos="", ranges=ranges)
    sample(patched, steps=12, scheduler="simple")
    sampling = model.get_model_object("model_sampling")
    s = sampling.percent_to_sigma
    seen = set()
    for sigma, rhos in recorder.applied().items():
        if sigma >= s(0.5) * (1 - 1e-4):
            want, name = reference_rhos(6, 1.0, 0.5), "first"
        elif sigma >= s(0.8) * (1 - 1e-4):
            want, name = [0.5] * 5 + [2.0], "second"
        else:
            want, name = np.ones(6), "outside"
        seen.add(name)
        np.testing.assert_allclose(rhos, want, rtol=1e-5, err_msg=f"sigma={sigma}")
    assert seen == {"first", "second", "outside"}


SAMPLERS = ["euler", "heun", "dpmpp_2m", "uni_pc", "ddim", "euler_ancestral", "dpmpp_sde", "sa_solver"]


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("cfg,batch", [(1.0, 1), (3.0, 2)])
def test_real_samplers_run_and_change_the_image(comfy_nodes_loaded, sampler, cfg, batch):
    """Every sampler runs with the patch at cfg 1 and batched CFG; the result is finite and differs."""
    assert sampler in comfy.samplers.KSampler.SAMPLERS
    model = tiny_model("sd1")
    (patched,) = run_node(comfy_nodes_loaded, "SkipTuning", model=model, rho_top=1.0, rho_bottom=0.7,
                          start_percent=0.0, end_percent=1.0)
    plain = sample(model, steps=3, cfg=cfg, sampler=sampler, batch=batch)
    tuned = sample(patched, steps=3, cfg=cfg, sampler=sampler, batch=batch)
    assert tuned.shape == plain.shape == (batch, 4, 16, 16)
    assert torch.isfinite(tuned).all()
    assert (tuned - plain).abs().max() > 1e-4


def test_cfg_batch_scales_cond_and_uncond_alike(comfy_nodes_loaded):
    """With CFG batching (cond and uncond in one call) every batch row gets the same rho."""
    model = tiny_model("sd1")
    patched, recorder = recorded(comfy_nodes_loaded, "SkipTuning", model, rho_top=1.0, rho_bottom=0.6,
                                 start_percent=0.0, end_percent=1.0)
    sample(patched, steps=2, cfg=4.0, batch=2)
    for rhos in recorder.applied().values():  # applied() asserts one ratio across the whole batch
        np.testing.assert_allclose(rhos, reference_rhos(6, 1.0, 0.6), rtol=1e-5)


@pytest.mark.parametrize("skip_first", [True, False])
def test_chains_with_freeu_v2_in_both_orders(comfy_nodes_loaded, skip_first):
    """Chained with ComfyUI's FreeU_V2 either way round: runs, and differs from FreeU alone."""
    model = tiny_model("sd1")
    freeu = comfy_nodes_loaded["FreeU_V2"]
    freeu_args = dict(b1=1.3, b2=1.4, s1=0.9, s2=0.2)
    skip_args = dict(rho_top=1.0, rho_bottom=0.7, start_percent=0.0, end_percent=1.0)

    def freeu_patch(m):
        return tuple(freeu.execute(model=m, **freeu_args).result)[0] if hasattr(freeu, "execute") \
            else freeu().patch(m, **freeu_args)[0]

    if skip_first:
        chained = freeu_patch(run_node(comfy_nodes_loaded, "SkipTuning", model=model, **skip_args)[0])
    else:
        chained = run_node(comfy_nodes_loaded, "SkipTuning", model=freeu_patch(model), **skip_args)[0]
    freeu_only = sample(freeu_patch(model), steps=3, cfg=2.0)
    both = sample(chained, steps=3, cfg=2.0)
    assert torch.isfinite(both).all()
    assert (both - freeu_only).abs().max() > 1e-4
    assert len(chained.model_options["transformer_options"]["patches"]["output_block_patch"]) == 2


def test_sweep_list_runs_through_a_real_ksampler(comfy_nodes_loaded):
    """The sweep's list makes one KSampler render each value; the 1.0 entry equals the unpatched image."""
    model = tiny_model("sd1")
    models, labels = run_node(comfy_nodes_loaded, "SkipTuningSweep", model=model, sweep="rho_bottom",
                              values="1.0, 0.8, 0.6", rho_top=1.0, rho_bottom=0.9, start_percent=0.0,
                              end_percent=1.0)
    assert labels == ["rho_bottom_1", "rho_bottom_0.8", "rho_bottom_0.6"]
    images = [sample(m, steps=3) for m in models]
    assert torch.equal(images[0], sample(model, steps=3))
    assert not torch.equal(images[1], images[0]) and not torch.equal(images[2], images[1])


def test_sigma_is_read_once_per_model_call(comfy_nodes_loaded):
    """GPU-ready: the noise level is read on the host once per U-Net call, not once per output block."""
    model = tiny_model("sd1")
    (patched,) = run_node(comfy_nodes_loaded, "SkipTuning", model=model, rho_top=1.0, rho_bottom=0.7,
                          start_percent=0.0, end_percent=1.0)
    (tuner,) = patched.model_options["transformer_options"][TUNERS]
    reads, calls = [], []
    read = tuner.rhos_at
    tuner.rhos_at = lambda schedule, sigma: reads.append(sigma) or read(schedule, sigma)
    hook = model.model.diffusion_model.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        sample(patched, steps=3, cfg=3.0, batch=2)
    finally:
        hook.remove()
    assert len(calls) == 3 and len(reads) == len(calls)


SCHEDULE_NODES = [
    ("ModelSamplingDiscrete", dict(sampling="v_prediction", zsnr=True)),
    ("ModelSamplingDiscrete", dict(sampling="lcm", zsnr=False)),
    ("ModelSamplingContinuousEDM", dict(sampling="v_prediction", sigma_max=120.0, sigma_min=0.002)),
    ("ModelSamplingSD3", dict(shift=3.0)),
]


@pytest.mark.parametrize("node_id,node_inputs", SCHEDULE_NODES, ids=lambda v: v if isinstance(v, str) else "")
def test_range_follows_the_schedule_sampled_in_either_order(comfy_nodes_loaded, node_id, node_inputs):
    """A range is resolved on the model actually sampled: SkipTuning before or after a schedule-changing node
    scales the same steps, exactly those inside [sigma(end), sigma(start)] of the final schedule."""
    start, end = 0.3, 0.7
    skip_args = dict(rho_top=1.0, rho_bottom=0.5, start_percent=start, end_percent=end)
    applied = {}
    for order in ("skip first", "schedule first"):
        recorder = SkipRecorder()
        model = tiny_model("sd1").clone()
        model.set_model_output_block_patch(recorder.patch(recorder.before))
        if order == "skip first":
            (model,) = run_node(comfy_nodes_loaded, "SkipTuning", model=model, **skip_args)
            (model,) = run_node(comfy_nodes_loaded, node_id, model=model, **node_inputs)
        else:
            (model,) = run_node(comfy_nodes_loaded, node_id, model=model, **node_inputs)
            (model,) = run_node(comfy_nodes_loaded, "SkipTuning", model=model, **skip_args)
        model.set_model_output_block_patch(recorder.patch(recorder.after))
        sample(model, steps=10, scheduler="normal")
        applied[order] = recorder.applied()
        sampled = model.get_model_object("model_sampling")
    assert applied["skip first"] == applied["schedule first"]
    high, low = sampled.percent_to_sigma(start), sampled.percent_to_sigma(end)
    inside = [s for s in applied["skip first"] if low * (1 - 1e-4) <= s <= high * (1 + 1e-4)]
    assert inside and len(inside) < len(applied["skip first"]), "the range should cut the run"
    for sigma, rhos in applied["skip first"].items():
        want = reference_rhos(6, 1.0, 0.5) if sigma in inside else np.ones(6)
        np.testing.assert_allclose(rhos, want, rtol=1e-5, err_msg=f"sigma={sigma}")
