"""Residual tuning (experimental) in diffusers: `attach_residual` on tiny random FluxTransformer2DModel and
ChromaTransformer2DModel, alone and inside FluxPipeline, against hand-written torch hooks; its ranges placed
as ComfyUI's own ModelSamplingFlux places them."""
import pytest
import torch

from harness import hooks_left
from skip_tuning_core import SkipTuningError
from test_comfy_compile import CountingBackend, assert_no_breaks, fresh_dynamo  # noqa: F401 (fixture)
from test_comfy_patch import reference_rhos
from test_diffusers import diffusers, tiny_clip  # noqa: F401 (fixture)
from tiny_flux import sample_flux, tiny_chroma, tiny_flux, tiny_flux_pipeline


def flux_inputs(sigma=0.6, chroma=False):
    generator = torch.Generator().manual_seed(1)
    inputs = dict(hidden_states=torch.randn(2, 16, 16, generator=generator),
                  encoder_hidden_states=torch.randn(2, 5, 24, generator=generator),
                  timestep=torch.full((2,), sigma), img_ids=torch.zeros(16, 3), txt_ids=torch.zeros(5, 3),
                  return_dict=False)
    if not chroma:
        inputs["pooled_projections"] = torch.randn(2, 12, generator=generator)
    return inputs


def run(transformer, **options):
    with torch.no_grad():
        return transformer(**flux_inputs(chroma=type(transformer).__name__.startswith("Chroma"), **options))[0]


def hand_tuned(transformer, rhos, kinds=("transformer_blocks", "single_transformer_blocks")):
    """Each chosen block's outputs as rho * input + (output - input), written with plain torch hooks: a tuple
    output is (encoder_hidden_states, hidden_states), a single tensor the (joined) hidden_states."""
    blocks = [block for kind in kinds for block in getattr(transformer, kind)]
    handles = []
    for block, rho in zip(blocks, rhos):
        seen = {}

        def keep(module, args, kwargs, seen=seen):
            seen["h"] = kwargs.get("hidden_states", args[0] if args else None)
            seen["e"] = kwargs.get("encoder_hidden_states")

        def scale(module, args, kwargs, out, seen=seen, rho=float(rho)):
            if isinstance(out, tuple):
                return (rho * seen["e"] + (out[0] - seen["e"]), rho * seen["h"] + (out[1] - seen["h"]))
            return rho * seen["h"] + (out - seen["h"])
        handles += [block.register_forward_pre_hook(keep, with_kwargs=True),
                    block.register_forward_hook(scale, with_kwargs=True)]
    try:
        return run(transformer)
    finally:
        for handle in handles:
            handle.remove()


@pytest.mark.parametrize("family", ["flux", "chroma"])
@pytest.mark.parametrize("blocks", ["all", "double", "single"])
def test_tuned_transformer_equals_hand_hooks_and_remove_restores_it(diffusers, family, blocks):
    lib, adapter = diffusers
    transformer = tiny_flux(lib) if family == "flux" else tiny_chroma(lib)
    plain = run(transformer)
    kinds = {"all": ("transformer_blocks", "single_transformer_blocks"), "double": ("transformer_blocks",),
             "single": ("single_transformer_blocks",)}[blocks]
    count = sum(len(getattr(transformer, kind)) for kind in kinds)
    rhos = reference_rhos(count, 0.7, 0.9)  # rho_last, rho_first: the first block is the ramp's start
    reference = hand_tuned(transformer, rhos, kinds)
    with adapter.attach_residual(transformer, rho_first=0.9, rho_last=0.7, blocks=blocks):
        assert hooks_left(transformer) == count + 1  # the transformer reads sigma, each chosen block scales
        tuned = run(transformer)
    assert torch.allclose(tuned, reference, atol=1e-6, rtol=1e-5)
    assert (tuned - plain).abs().max() > 1e-3
    assert hooks_left(transformer) == 0 and torch.equal(run(transformer), plain)


def test_rho_one_is_bit_identical_and_two_handles_add_their_changes(diffusers):
    lib, adapter = diffusers
    transformer = tiny_flux(lib)
    plain = run(transformer)
    with adapter.attach_residual(transformer, rho_first=1.0, rho_last=1.0):
        assert torch.equal(run(transformer), plain)
    # rho 0.9 twice: each adds -0.1 * input, as rho 0.8 once does.
    once = hand_tuned(transformer, [0.8] * 5)
    with adapter.attach_residual(transformer, 0.9, 0.9), adapter.attach_residual(transformer, 0.9, 0.9):
        assert torch.allclose(run(transformer), once, atol=1e-6, rtol=1e-5)
    assert hooks_left(transformer) == 0


def test_a_range_tunes_exactly_the_calls_comfyuis_flux_schedule_places_inside_it(diffusers):
    """The pipeline's shift (mu from the image's token count) is ComfyUI's ModelSamplingFlux shift; a call is
    tuned exactly when its sigma lies in the range as ComfyUI's percent_to_sigma places it."""
    import comfy.model_sampling
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    lib, adapter = diffusers
    pipe = tiny_flux_pipeline(lib)
    transformer = pipe.transformer
    calls = []
    record = transformer.register_forward_hook(
        lambda m, args, kwargs, out: calls.append((float(kwargs["timestep"].max()), kwargs["hidden_states"].shape[1])),
        with_kwargs=True)
    handle = adapter.attach_residual(pipe, rho_first=0.8, rho_last=0.8, start_percent=0.3, end_percent=0.7)
    tuned = []
    probe = transformer.single_transformer_blocks[0].register_forward_hook(
        lambda m, args, out: tuned.append(float(handle.factors[0]) != 1.0))
    sample_flux(pipe)
    handle.remove()
    record.remove()
    probe.remove()
    assert "set_timesteps" not in vars(pipe.scheduler) and hooks_left(transformer) == 0

    # ComfyUI's ModelSamplingFlux node computes the same mu from the image size (its token count).
    comfy = comfy.model_sampling.ModelSamplingFlux()
    comfy.set_parameters(shift=calculate_shift(calls[0][1], 256, 4096, 0.5, 1.15))
    low, high = float(comfy.percent_to_sigma(0.7)), float(comfy.percent_to_sigma(0.3))
    expected = [low * (1 - 1e-4) <= s <= high * (1 + 1e-4) for s, _ in calls]
    assert tuned == expected and 0 < sum(expected) < len(expected)


def test_bad_input_and_unsupported_models_are_refused_with_the_field(diffusers):
    lib, adapter = diffusers
    transformer = tiny_flux(lib)
    for options, field in (({"rho_first": 5.0}, "rho_first"), ({"rho_last": -1.0}, "rho_last"),
                           ({"blocks": "middle"}, "blocks"), ({"end_percent": 2.0}, "end_percent")):
        with pytest.raises(SkipTuningError, match=field):
            adapter.attach_residual(transformer, **options)
    with pytest.raises(SkipTuningError, match="only the whole run"):
        adapter.attach_residual(transformer, start_percent=0.5)
    unet = lib.UNet2DConditionModel(block_out_channels=(32, 64), cross_attention_dim=32, norm_num_groups=8,
                                    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), layers_per_block=1)
    with pytest.raises(SkipTuningError, match="UNet2DConditionModel.*Skip Tuning"):
        adapter.attach_residual(unet)
    assert hooks_left(transformer) == 0 and hooks_left(unet) == 0


def test_compiled_transformer_is_tuned_exactly_and_a_new_value_compiles_nothing(diffusers, fresh_dynamo):
    """attach before torch.compile: the compiled run equals the eager tuned one; removed and attached again with
    other values, the graph is reused (the factors are tensors, the hooks a class dynamo guards on)."""
    lib, adapter = diffusers
    plain_backend, backend = CountingBackend(), CountingBackend()
    run(torch.compile(tiny_flux(lib), backend=plain_backend))
    transformer = tiny_flux(lib)
    compiled = torch.compile(transformer, backend=backend)
    for rho in (0.9, 0.7):
        reference = hand_tuned(transformer, [rho] * 5)
        with adapter.attach_residual(transformer, rho, rho):
            assert torch.allclose(run(compiled), reference, atol=1e-6, rtol=1e-5)
    assert backend.compiled == plain_backend.compiled
    assert_no_breaks()


def test_the_readme_flux_example_runs_as_written(diffusers, tmp_path, monkeypatch):
    """README's residual tuning block, unchanged, with `FluxPipeline.from_pretrained` handing back a tiny
    FluxPipeline with text encoders (a CLIP and a T5 of random weights, one word-piece vocabulary for both)."""
    import re
    import runpy
    from pathlib import Path

    from transformers import T5Config, T5EncoderModel

    lib, adapter = diffusers
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "attach_residual(" in b]
    tokenizer, clip = tiny_clip(tmp_path, hidden_size=12, intermediate_size=16, num_attention_heads=2,
                                num_hidden_layers=1, projection_dim=12)
    t5 = T5EncoderModel(T5Config(vocab_size=tokenizer.vocab_size, d_model=24, d_kv=8, d_ff=32, num_layers=1,
                                 num_heads=2, pad_token_id=1, eos_token_id=1)).eval()
    tiny = tiny_flux_pipeline(lib)
    pipe = lib.FluxPipeline(scheduler=tiny.scheduler, vae=tiny.vae, text_encoder=clip, tokenizer=tokenizer,
                            text_encoder_2=t5, tokenizer_2=tokenizer, transformer=tiny.transformer)
    calls = []
    monkeypatch.setattr(lib.FluxPipeline, "from_pretrained", lambda name, *a, **k: calls.append(name) or pipe)
    seen = []
    pipe.transformer.register_forward_hook(lambda module, args, out: seen.append(hooks_left(module) - 1))
    example = tmp_path / "readme_flux_example.py"
    example.write_text(block)
    namespace = runpy.run_path(str(example))
    assert calls and namespace["image"].size[0] > 0
    assert seen and min(seen) == 6, "the transformer and its 5 blocks tuned while the pipeline ran"
    assert hooks_left(pipe.transformer) == 1 and "set_timesteps" not in vars(pipe.scheduler)
