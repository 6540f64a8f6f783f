"""skip_tuning_diffusers on the real diffusers from PyPI: tiny random-weight UNet2DConditionModels built from
configs (SD1-like: 12 skips, SDXL-like: 9) and a real StableDiffusionPipeline of tiny random components."""
import json

import pytest
import torch

from harness import hooks_left
from skip_tuning_core import SkipTuningError
from skip_tuning_lab.comfy_host import declare_torchvision_ops


@pytest.fixture(scope="module")
def diffusers():
    # diffusers imports transformers, which imports torchvision; its ops need declaring beside the CPU torch
    # here (the helper says why). Nothing tested here uses them.
    declare_torchvision_ops()
    import diffusers

    import skip_tuning_diffusers
    return diffusers, skip_tuning_diffusers


CONFIGS = {
    "sd1": dict(block_out_channels=(32, 32, 64, 64), layers_per_block=2, cross_attention_dim=32,
                down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3),
    "sdxl": dict(block_out_channels=(32, 64, 64), layers_per_block=2, cross_attention_dim=32,
                 transformer_layers_per_block=(1, 2, 2),
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")),
}
SKIPS = {"sd1": 12, "sdxl": 9}


def tiny_unet(diffusers, kind):
    torch.manual_seed(0)
    unet = diffusers[0].UNet2DConditionModel(sample_size=16, in_channels=4, out_channels=4, attention_head_dim=8,
                                             norm_num_groups=32, **CONFIGS[kind])
    with torch.no_grad():  # random weights that make every skip matter (diffusers zero-inits some outputs)
        for parameter in unet.parameters():
            parameter.normal_(0.0, 0.05)
    return unet.eval()


def run(unet, t, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x, context = torch.randn(2, 4, 16, 16, generator=generator), torch.randn(2, 7, 32, generator=generator)
    with torch.no_grad():
        return unet(x, torch.tensor([t, t * 0.5]), context).sample


def reference(unet, rhos):
    """Skip j scaled at another point: the `res_hidden_states_tuple` each up block receives (its resnet k
    takes the tuple's element -1-k), by hooks on the up blocks, not on the resnets."""
    handles, offset = [], 0
    for block in unet.up_blocks:
        count = len(block.resnets)

        def scale(module, args, kwargs, offset=offset, count=count):
            skips = list(kwargs["res_hidden_states_tuple"])
            for k in range(count):
                skips[-1 - k] = skips[-1 - k] * rhos[offset + k]
            return args, {**kwargs, "res_hidden_states_tuple": tuple(skips)}

        handles.append(block.register_forward_pre_hook(scale, with_kwargs=True))
        offset += count
    return handles



@pytest.mark.parametrize("kind", ["sd1", "sdxl"])
def test_attach_equals_skips_scaled_on_the_up_blocks(diffusers, kind):
    unet = tiny_unet(diffusers, kind)
    resnets, _ = diffusers[1].skip_resnets(unet)
    assert len(resnets) == SKIPS[kind]
    rhos = [0.6 + 0.4 * j / (SKIPS[kind] - 1) for j in range(SKIPS[kind])]  # deepest (j = 0) first
    untuned = run(unet, 600.0)
    handles = reference(unet, rhos)
    expected = run(unet, 600.0)
    for handle in handles:
        handle.remove()
    with diffusers[1].attach(unet, rho_top=1.0, rho_bottom=0.6):
        tuned = run(unet, 600.0)
    torch.testing.assert_close(tuned, expected, rtol=1e-5, atol=1e-6)
    assert (tuned - untuned).abs().max() > 1e-3 * untuned.abs().max()
    assert torch.equal(run(unet, 600.0), untuned) and hooks_left(unet) == 0


def test_rho_one_is_bit_identical_and_installs_nothing(diffusers):
    unet = tiny_unet(diffusers, "sd1")
    untuned = run(unet, 400.0)
    handle = diffusers[1].attach(unet, rho_top=1.0, rho_bottom=1.0)
    assert hooks_left(unet) == 0 and torch.equal(run(unet, 400.0), untuned)
    handle.remove()


def test_range_gates_on_the_largest_timestep_of_the_call(diffusers):
    """start 0.3, end 0.7: t in [(1 - 0.7) x 999, (1 - 0.3) x 999] = [299.7, 699.3], closed."""
    unet = tiny_unet(diffusers, "sd1")
    handle = diffusers[1].attach(unet, rho_bottom=0.5, start_percent=0.3, end_percent=0.7)
    scaled = {}
    for t in (999.0, 699.3 * 1.001, 699.3, 500.0, 299.7, 299.7 * 0.999, 100.0):
        tuned = run(unet, t)
        handle.remove()
        scaled[t] = not torch.equal(tuned, run(unet, t))
        handle = diffusers[1].attach(unet, rho_bottom=0.5, start_percent=0.3, end_percent=0.7)
    handle.remove()
    assert scaled == {999.0: False, 699.3 * 1.001: False, 699.3: True, 500.0: True, 299.7: True,
                      299.7 * 0.999: False, 100.0: False}


def test_remove_is_idempotent_and_leaves_the_weights_untouched(diffusers):
    unet = tiny_unet(diffusers, "sdxl")
    weights = {k: v.clone() for k, v in unet.state_dict().items()}
    untuned = run(unet, 800.0)
    handle = diffusers[1].attach(unet, rho_bottom=0.7)
    assert hooks_left(unet) > 0
    run(unet, 800.0)
    handle.remove()
    handle.remove()
    assert hooks_left(unet) == 0 and torch.equal(run(unet, 800.0), untuned)
    assert all(torch.equal(v, unet.state_dict()[k]) for k, v in weights.items())


def test_bad_values_and_models_without_skips_are_refused_by_name(diffusers):
    unet = tiny_unet(diffusers, "sd1")
    with pytest.raises(SkipTuningError, match="rho_bottom"):
        diffusers[1].attach(unet, rho_bottom=9)
    with pytest.raises(SkipTuningError, match="block_rhos"):
        diffusers[1].attach(unet, block_rhos="0.8, 0.9")
    with pytest.raises(SkipTuningError, match="no skip|none|not supported"):
        diffusers[1].attach(torch.nn.Linear(2, 2))
    assert hooks_left(unet) == 0


def tiny_clip(tmp_path, **config):
    """A CLIP tokenizer written here (one word piece per letter) and a random CLIPTextModel for it; `config`
    overrides the text model's sizes."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = {token: i for i, token in enumerate(["<|startoftext|>", "<|endoftext|>"] + letters
                                                + [f"{c}</w>" for c in letters])}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"), model_max_length=16)
    torch.manual_seed(0)
    sizes = {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2, **config}
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), max_position_embeddings=16, bos_token_id=0,
                                        eos_token_id=1, pad_token_id=1, **sizes)).eval()
    return tokenizer, text


def tiny_pipeline(diffusers, tmp_path, scheduler):
    """A real StableDiffusionPipeline from tiny random components and a CLIP tokenizer written here."""
    lib = diffusers[0]
    tokenizer, text = tiny_clip(tmp_path)
    vae = lib.AutoencoderKL(block_out_channels=(32, 32), down_block_types=("DownEncoderBlock2D",) * 2,
                            up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=32).eval()
    return lib.StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer,
                                       unet=tiny_unet(diffusers, "sd1"), scheduler=scheduler, safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)


@pytest.mark.parametrize("scheduler", ["DDIMScheduler", "EulerDiscreteScheduler"])
def test_pipeline_is_tuned_while_attached_and_exact_after_remove(diffusers, tmp_path, scheduler):
    pipe = tiny_pipeline(diffusers, tmp_path, getattr(diffusers[0], scheduler)())

    def image():
        return pipe("a digit", num_inference_steps=4, height=16, width=16, guidance_scale=3.0, output_type="np",
                    generator=torch.Generator().manual_seed(0)).images

    untuned = image()
    handle = diffusers[1].attach(pipe, rho_top=1.0, rho_bottom=0.5)
    tuned = image()
    handle.remove()
    assert abs(tuned - untuned).max() > 1e-4
    assert (image() == untuned).all() and hooks_left(pipe.unet) == 0


def test_pip_install_gives_the_core_and_the_adapter(tmp_path):
    """`pip install .` (what `pip install git+<repository>` runs) installs the two host-free packages."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target), str(repo)],
                   check=True, cwd=tmp_path, timeout=600)
    assert {p.name for p in target.iterdir() if not p.name.endswith("-info")} >= {"skip_tuning_core",
                                                                                  "skip_tuning_diffusers"}
    assert not (target / "nodes").exists() and not (target / "sd_webui_ext").exists()
    if (repo / "skip_tuning_core" / "presets.json").exists():
        assert (target / "skip_tuning_core" / "presets.json").read_text() == \
            (repo / "skip_tuning_core" / "presets.json").read_text()
    probe = "import skip_tuning_diffusers, skip_tuning_core.hooks; print(skip_tuning_diffusers.__file__)"
    out = subprocess.run([sys.executable, "-c", probe], env={"PYTHONPATH": str(target)}, cwd=tmp_path,
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith(str(target))


def test_the_readme_example_runs_as_written(diffusers, tmp_path, monkeypatch):
    """README's diffusers block, unchanged, with `from_pretrained` handing back a tiny pipeline (no download)."""
    import re
    import runpy
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "skip_tuning_diffusers.attach(" in b]
    pipe = tiny_pipeline(diffusers, tmp_path, diffusers[0].EulerDiscreteScheduler())
    calls = []

    def from_pretrained(name, *args, **kwargs):
        calls.append(name)
        return pipe

    monkeypatch.setattr(diffusers[0].StableDiffusionPipeline, "from_pretrained", from_pretrained)
    seen = []
    pipe.unet.register_forward_hook(lambda module, args, out: seen.append(hooks_left(module) - 1))
    example = tmp_path / "readme_example.py"
    example.write_text(block)
    namespace = runpy.run_path(str(example))
    assert calls and namespace["image"].size == (32, 32)
    # All 12 skip layers are tuned (a factor of 1.0 for the shallowest, so the graph never depends on the
    # values) and the U-Net itself.
    assert seen and min(seen) == 13, "tuned while the pipeline ran"
    assert hooks_left(pipe.unet) == 1, "only the test's own hook is left"
