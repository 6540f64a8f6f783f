"""skip_tuning_diffusers with what diffusers users combine it with: torch.compile (either order), FreeU, a PEFT
LoRA, group offloading, a second handle; and ranges placed in the run as ComfyUI places them, for a DDPM-style
pipeline and for SVD's EDM-conditioned U-Net, each against a hand reference or ComfyUI's own schedule code."""
import pytest
import torch
from torch._dynamo.utils import counters

from harness import hooks_left
from skip_tuning_core import SkipTuningError
from test_comfy_compile import CountingBackend, fresh_dynamo  # noqa: F401 (fixture)
from test_comfy_patch import reference_rhos
from test_diffusers import diffusers, reference, run, tiny_pipeline, tiny_unet  # noqa: F401 (fixture)



def hand_tuned(unet, rhos, t=600.0):
    """The U-Net's output with skip j scaled by rhos[j] on the up blocks' `res_hidden_states_tuple`."""
    handles = reference(unet, rhos)
    try:
        return run(unet, t)
    finally:
        for handle in handles:
            handle.remove()


def test_compiled_unet_keeps_the_unpatched_graph_count_and_a_new_value_or_range_compiles_nothing(diffusers,
                                                                                                   fresh_dynamo):
    """attach before compile: one graph as unpatched, 0 breaks; remove then attach a new rho and range: the
    graph is reused and still exact (torch hooks would be silently dropped here: dynamo does not guard empty
    hook dicts)."""
    attach = diffusers[1].attach
    plain_backend, backend = CountingBackend(), CountingBackend()
    plain = torch.compile(tiny_unet(diffusers, "sd1"), backend=plain_backend)
    for t in (900.0, 500.0, 100.0):
        run(plain, t)
    eager = tiny_unet(diffusers, "sd1")
    unet = tiny_unet(diffusers, "sd1")
    handle = attach(unet, rho_bottom=0.6)
    compiled = torch.compile(unet, backend=backend)
    for t in (900.0, 500.0, 100.0):
        torch.testing.assert_close(run(compiled, t), hand_tuned(eager, reference_rhos(12, 1.0, 0.6), t), rtol=1e-5, atol=1e-6)
    assert backend.compiled == plain_backend.compiled == 1
    handle.remove()
    torch.testing.assert_close(run(compiled, 500.0), run(eager, 500.0), rtol=1e-5, atol=1e-6)
    removed_graphs = backend.compiled  # the untuned U-Net is another type: compiled once
    handle = attach(unet, rho_top=0.9, rho_bottom=0.4, start_percent=0.3, end_percent=0.7)
    torch.testing.assert_close(run(compiled, 500.0), hand_tuned(eager, reference_rhos(12, 0.9, 0.4), 500.0),
                               rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(run(compiled, 900.0), run(eager, 900.0), rtol=1e-5, atol=1e-6)  # outside
    handle.remove()
    handle = attach(unet, rho_bottom=0.0)  # 0.0 is a value: the deepest skip is dropped
    torch.testing.assert_close(run(compiled, 500.0), hand_tuned(eager, reference_rhos(12, 1.0, 0.0), 500.0),
                               rtol=1e-5, atol=1e-6)
    handle.remove()
    assert backend.compiled == removed_graphs == 2
    assert sum(counters["graph_break"].values()) == 0 and hooks_left(unet) == 0


def test_attach_after_the_unet_ran_compiled_tunes_it(diffusers, fresh_dynamo):
    """`pipe.unet = torch.compile(pipe.unet)`, a generation, then attach(pipe.unet): tuned, then exact after remove."""
    backend = CountingBackend()
    eager, unet = tiny_unet(diffusers, "sdxl"), tiny_unet(diffusers, "sdxl")
    compiled = torch.compile(unet, backend=backend)
    untuned = run(compiled, 700.0)
    with diffusers[1].attach(compiled, rho_top=1.0, rho_bottom=0.5):
        torch.testing.assert_close(run(compiled, 700.0), hand_tuned(eager, reference_rhos(9, 1.0, 0.5), 700.0),
                                   rtol=1e-5, atol=1e-6)
    assert torch.equal(run(compiled, 700.0), untuned) and backend.compiled == 2
    assert sum(counters["graph_break"].values()) == 0


@pytest.mark.parametrize("freeu_first", [True, False])
def test_attach_composes_with_diffusers_freeu_in_either_order(diffusers, freeu_first):
    """FreeU filters the skip before the resnet and Skip Tuning scales it there; both are linear in the skip,
    so the result equals FreeU with the skips scaled on the up blocks."""
    unet = tiny_unet(diffusers, "sd1")
    freeu = dict(s1=0.9, s2=0.2, b1=1.2, b2=1.4)
    untuned = run(unet, 600.0)
    if freeu_first:
        unet.enable_freeu(**freeu)
    handle = diffusers[1].attach(unet, rho_bottom=0.6)
    if not freeu_first:
        unet.enable_freeu(**freeu)
    tuned = run(unet, 600.0)
    handle.remove()
    torch.testing.assert_close(tuned, hand_tuned(unet, reference_rhos(12, 1.0, 0.6)), rtol=1e-5, atol=1e-6)
    freeu_alone = run(unet, 600.0)
    assert (tuned - freeu_alone).abs().max() > 1e-4 and not torch.equal(freeu_alone, untuned)
    unet.disable_freeu()
    assert torch.equal(run(unet, 600.0), untuned) and hooks_left(unet) == 0


def test_attach_composes_with_a_peft_lora_unfused_and_fused(diffusers):
    from peft import LoraConfig

    unet = tiny_unet(diffusers, "sd1")
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights=False,
                                target_modules=["to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2"]))
    with_lora = run(unet, 600.0)
    rhos = reference_rhos(12, 1.0, 0.7)
    handle = diffusers[1].attach(unet, rho_bottom=0.7)
    unfused = run(unet, 600.0)
    unet.fuse_lora()
    fused = run(unet, 600.0)
    handle.remove()
    fused_untuned = run(unet, 600.0)
    torch.testing.assert_close(fused, hand_tuned(unet, rhos), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fused_untuned, with_lora, rtol=1e-4, atol=1e-5)  # fusing rounds
    unet.unfuse_lora()
    torch.testing.assert_close(run(unet, 600.0), with_lora, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(unfused, hand_tuned(unet, rhos), rtol=1e-5, atol=1e-6)
    assert (unfused - with_lora).abs().max() > 1e-4
    assert hooks_left(unet) == 0


def test_attach_composes_with_group_offloading(diffusers):
    unet = tiny_unet(diffusers, "sdxl")
    expected = hand_tuned(unet, reference_rhos(9, 0.9, 0.5))
    untuned = run(unet, 600.0)
    unet.enable_group_offload(torch.device("cpu"), offload_type="block_level", num_blocks_per_group=1)
    with diffusers[1].attach(unet, rho_top=0.9, rho_bottom=0.5):
        torch.testing.assert_close(run(unet, 600.0), expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(run(unet, 600.0), untuned)


@pytest.mark.parametrize("first_removed", [0, 1])
def test_two_handles_multiply_and_come_off_in_either_order(diffusers, first_removed):
    unet = tiny_unet(diffusers, "sd1")
    untuned = run(unet, 600.0)
    a, b = reference_rhos(12, 1.0, 0.8), reference_rhos(12, 0.9, 0.5)
    handles = [diffusers[1].attach(unet, rho_bottom=0.8), diffusers[1].attach(unet, rho_top=0.9, rho_bottom=0.5)]
    torch.testing.assert_close(run(unet, 600.0), hand_tuned(tiny_unet(diffusers, "sd1"), [x * y for x, y in zip(a, b)]),
                               rtol=1e-5, atol=1e-6)
    handles.pop(first_removed).remove()
    alone = diffusers[1].attach(tiny_unet(diffusers, "sd1"), **(
        dict(rho_top=0.9, rho_bottom=0.5) if first_removed == 0 else dict(rho_bottom=0.8)))
    assert torch.equal(run(unet, 600.0), run(alone.modules[0], 600.0))
    handles.pop().remove()
    assert torch.equal(run(unet, 600.0), untuned) and hooks_left(unet) == 0


def tuned_calls(unet, sample, handle_factory):
    """Run `sample()` with a handle attached; returns [(sigma index, tuned?)] per U-Net call, where tuned means
    its output differs from the same call made again untuned."""
    calls = []
    pre = unet.register_forward_pre_hook(lambda m, args, kwargs: calls.append([args, kwargs]), with_kwargs=True)
    post = unet.register_forward_hook(lambda m, args, out: calls[-1].append(out[0].clone()))
    handle = handle_factory()
    sample()
    handle.remove()
    pre.remove()
    post.remove()
    with torch.no_grad():
        return [not torch.equal(out, unet(*args, **kwargs)[0]) for args, kwargs, out in calls]


def comfy_window(schedule, start, end):
    """[sigma_low, sigma_high] of a range by ComfyUI's own percent_to_sigma."""
    return float(schedule.percent_to_sigma(end)), float(schedule.percent_to_sigma(start))


@pytest.mark.parametrize("scheduler", ["EulerDiscreteScheduler", "DDIMScheduler"])
def test_a_range_tunes_exactly_the_calls_comfyui_places_inside_it_sd1(diffusers, tmp_path, scheduler):
    import comfy.model_sampling

    lib = diffusers[0]
    pipe = tiny_pipeline(diffusers, tmp_path, getattr(lib, scheduler)(beta_schedule="scaled_linear",
                                                                       beta_start=0.00085, beta_end=0.012))

    def sample():
        pipe("a digit", num_inference_steps=10, height=16, width=16, guidance_scale=1.0, output_type="np",
             generator=torch.Generator().manual_seed(0))

    tuned = tuned_calls(pipe.unet, sample, lambda: diffusers[1].attach(pipe, rho_bottom=0.5, start_percent=0.3,
                                                                        end_percent=0.7))
    # ComfyUI's discrete schedule (the same scaled_linear betas): a call is inside when its sigma is.
    comfy = comfy.model_sampling.ModelSamplingDiscrete()
    low, high = comfy_window(comfy, 0.3, 0.7)
    sigmas = [float(comfy.sigma(torch.tensor(float(t)))) for t in pipe.scheduler.timesteps]
    expected = [low * (1 - 1e-4) <= s <= high * (1 + 1e-4) for s in sigmas]
    assert tuned == expected and 0 < sum(expected) < len(expected)


def tiny_svd_unet(lib):
    torch.manual_seed(0)
    unet = lib.UNetSpatioTemporalConditionModel(
        sample_size=8, in_channels=8, out_channels=4, block_out_channels=(32, 64), layers_per_block=2,
        cross_attention_dim=32, num_attention_heads=(4, 8), projection_class_embeddings_input_dim=3 * 8,
        addition_time_embed_dim=8, down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"))
    with torch.no_grad():
        for parameter in unet.parameters():
            parameter.normal_(0.0, 0.05)
    return unet.eval()


def svd_scheduler(lib):
    """SVD's scheduler configuration (stable-video-diffusion-img2vid scheduler_config.json)."""
    return lib.EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                      interpolation_type="linear", num_train_timesteps=1000,
                                      prediction_type="v_prediction", sigma_max=700.0, sigma_min=0.002,
                                      steps_offset=1, timestep_spacing="leading", timestep_type="continuous",
                                      use_karras_sigmas=True)


def svd_sample(unet, scheduler, steps=10, frames=2):
    """SVD's denoising loop (StableVideoDiffusionPipeline.__call__, CFG off): image latents concatenated on
    channels, `added_time_ids` (fps, motion bucket, noise augmentation)."""
    scheduler.set_timesteps(steps)
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, frames, 4, 8, 8, generator=generator) * scheduler.init_noise_sigma
    image_latents = torch.randn(1, frames, 4, 8, 8, generator=generator)
    context = torch.randn(1, 1, 32, generator=generator)
    time_ids = torch.tensor([[6.0, 127.0, 0.02]])
    with torch.no_grad():
        for t in scheduler.timesteps:
            model_input = torch.cat([scheduler.scale_model_input(latents, t), image_latents], dim=2)
            noise = unet(model_input, t, encoder_hidden_states=context, added_time_ids=time_ids).sample
            latents = scheduler.step(noise, t, latents).prev_sample


def test_svd_unet_is_tuned_against_a_hand_reference_and_a_range_follows_comfyuis_edm_schedule(diffusers):
    import comfy.model_sampling

    lib, adapter = diffusers
    unet = tiny_svd_unet(lib)
    resnets, widths = adapter.skip_resnets(unet)
    assert len(resnets) == 6
    generator = torch.Generator().manual_seed(1)
    call = dict(sample=torch.randn(1, 2, 8, 8, 8, generator=generator), timestep=torch.tensor(0.5),
                encoder_hidden_states=torch.randn(1, 1, 32, generator=generator),
                added_time_ids=torch.tensor([[6.0, 127.0, 0.02]]))
    with torch.no_grad():
        untuned = unet(**call).sample
        handles = reference(unet, reference_rhos(6, 1.0, 0.5))
        expected = unet(**call).sample
        for handle in handles:
            handle.remove()
        with adapter.attach(unet, rho_bottom=0.5):
            tuned = unet(**call).sample
    torch.testing.assert_close(tuned, expected, rtol=1e-5, atol=1e-6)
    assert (tuned - untuned).abs().max() > 1e-4 and torch.equal(unet(**call).sample, untuned)
    scheduler = svd_scheduler(lib)

    class Pipeline:  # what attach reads of StableVideoDiffusionPipeline: its unet and scheduler
        pass

    pipe = Pipeline()
    pipe.unet, pipe.scheduler = unet, scheduler
    tuned = tuned_calls(unet, lambda: svd_sample(unet, scheduler),
                        lambda: adapter.attach(pipe, rho_bottom=0.5, start_percent=0.3, end_percent=0.7))
    edm = comfy.model_sampling.ModelSamplingContinuousEDM()
    edm.set_parameters(sigma_min=0.002, sigma_max=700.0, sigma_data=1.0)
    low, high = comfy_window(edm, 0.3, 0.7)
    scheduler.set_timesteps(10)
    sigmas = scheduler.sigmas[:-1].tolist()
    expected = [low * (1 - 1e-4) <= s <= high * (1 + 1e-4) for s in sigmas]
    assert tuned == expected and 0 < sum(expected) < len(expected)
    # The U-Net alone (no scheduler) follows the same convention.
    assert tuned_calls(unet, lambda: svd_sample(unet, scheduler),
                       lambda: adapter.attach(unet, rho_bottom=0.5, start_percent=0.3, end_percent=0.7)) == expected


def test_a_range_where_nothing_tells_the_run_is_refused_and_the_whole_run_is_not(diffusers):
    lib, adapter = diffusers

    class Pipeline:
        pass

    pipe = Pipeline()
    pipe.unet, pipe.scheduler = tiny_unet(diffusers, "sd1"), lib.FlowMatchEulerDiscreteScheduler()
    with pytest.raises(SkipTuningError, match="cannot tell where a call .* whole run"):
        adapter.attach(pipe, rho_bottom=0.7, start_percent=0.2)
    with pytest.raises(SkipTuningError, match="cannot tell"):
        adapter.attach(pipe, rho_bottom=0.7, ranges="0.0-0.5")
    with adapter.attach(pipe, rho_bottom=0.7):
        assert hooks_left(pipe.unet) == 13
    assert hooks_left(pipe.unet) == 0
