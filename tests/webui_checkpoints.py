"""Tiny random-weight checkpoints that the WebUIs' own loaders accept (no model can be downloaded here).

`python tests/webui_checkpoints.py KIND DIR [A1111_ROOT]` writes KIND's checkpoints into DIR:
- `a1111`: run with .venv-a1111 and A1111 1.10.1's tree (its `repositories/` hold `ldm`). A `LatentDiffusion`
  built through ldm's own classes (12 output blocks, small KL VAE, a 1-layer 32-wide CLIP text model), saved as
  NAME.safetensors with NAME.yaml beside it (A1111 uses a config next to a checkpoint) and a local byte-level
  CLIP tokenizer: `tiny`, `other` (another seed) and `deep` (8 output blocks).
- `forge` (Forge main) and `forks` (reForge, Forge Classic): run with .venv (the original `ldm` from
  stable-diffusion-sdkit, ComfyUI's TAESD, transformers). These WebUIs guess the model type from the U-Net's
  keys and build the text encoder and VAE from their own configs, leaving weights the file lacks
  uninitialised, so those are stored whole: a full-size CLIP-L text model. Forge main detects SD1.5 from a U-Net
  at 320 channels on every level (channel_mult [1, 1, 1, 1], the real 12 output blocks) and needs a full KL VAE;
  the forks take a 320/768 U-Net with channel_mult [1, 1] and one res block per level (4 output blocks) and a
  TAESD VAE (keys as reForge's ldm_patched/contrib/nodes.py 700-750 writes them; accepted by
  ldm_patched/modules/sd.py, reForge 364, Classic 252). `tiny` and `other` (another seed) each.
tests/a1111_harness.py imports the `a1111` builders; tests/webui_apps.py runs this file once per KIND and
keeps the result, keyed by this file's contents.
"""
import json
import sys
from pathlib import Path

A1111_YAML = """model:
  target: ldm.models.diffusion.ddpm.LatentDiffusion
  params:
    linear_start: 0.00085
    linear_end: 0.0120
    num_timesteps_cond: 1
    timesteps: 1000
    first_stage_key: jpg
    cond_stage_key: txt
    image_size: 8
    channels: 4
    cond_stage_trainable: false
    conditioning_key: crossattn
    scale_factor: 0.18215
    use_ema: false
    unet_config:
      target: ldm.modules.diffusionmodules.openaimodel.UNetModel
      params:
        image_size: 8
        in_channels: 4
        out_channels: 4
        model_channels: 32
        attention_resolutions: [4]
        num_res_blocks: {num_res_blocks}
        channel_mult: [1, 1, 2, 2]
        num_heads: 2
        use_spatial_transformer: true
        transformer_depth: 1
        context_dim: 32
        use_checkpoint: false
        legacy: false
    first_stage_config:
      target: ldm.models.autoencoder.AutoencoderKL
      params:
        embed_dim: 4
        ddconfig:
          double_z: true
          z_channels: 4
          resolution: 64
          in_channels: 3
          out_ch: 3
          ch: 32
          ch_mult: [1, 1, 1, 1]
          num_res_blocks: 1
          attn_resolutions: []
          dropout: 0.0
        lossconfig:
          target: torch.nn.Identity
    cond_stage_config:
      target: ldm.modules.encoders.modules.FrozenCLIPEmbedder
      params:
        version: {clip}
"""


def make_clip_folder(clip: Path):
    """A byte-level CLIP tokenizer (every byte a token, no merges) and a 1-layer, 32-wide text model."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel
    from transformers.models.clip.tokenization_clip import bytes_to_unicode

    clip.mkdir(parents=True, exist_ok=True)
    chars = list(bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: i for i, token in enumerate(tokens)}
    (clip / "vocab.json").write_text(json.dumps(vocab))
    (clip / "merges.txt").write_text("#version: 0.2\n")
    (clip / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 77}))
    torch.manual_seed(0)
    config = CLIPTextConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_attention_heads=4,
                            num_hidden_layers=1, max_position_embeddings=77, bos_token_id=vocab["<|startoftext|>"],
                            eos_token_id=vocab["<|endoftext|>"], pad_token_id=vocab["<|endoftext|>"])
    model = CLIPTextModel(config)
    with torch.no_grad():  # a layer norm's unit weight and zero bias give a zero-mean output, which A1111's
        for name, param in model.named_parameters():  # emphasis step divides by (0/0: NaN)
            if param.dim() == 1:
                param.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn(param.shape))
    model.save_pretrained(clip, safe_serialization=True)


def make_a1111_checkpoint(models: Path, clip: Path, name: str, seed: int, num_res_blocks: int = 2):
    """NAME.safetensors with NAME.yaml beside it; 2 res blocks per level give 12 output blocks, 1 gives 8."""
    import torch
    from ldm.util import instantiate_from_config
    from omegaconf import OmegaConf
    from safetensors.torch import save_file

    yaml = models / f"{name}.yaml"
    yaml.write_text(A1111_YAML.format(clip=clip, num_res_blocks=num_res_blocks))
    model = instantiate_from_config(OmegaConf.load(yaml).model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if value.is_floating_point() and "first_stage_model" not in key and value.dim() > 1:
                value.copy_(torch.randn(value.shape, generator=generator) / value[0].numel() ** 0.5)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(models / f"{name}.safetensors"))


def make_a1111_checkpoints(models: Path, clip: Path):
    models.mkdir(parents=True, exist_ok=True)
    make_clip_folder(clip)
    make_a1111_checkpoint(models, clip, "tiny", seed=0)
    make_a1111_checkpoint(models, clip, "other", seed=1)
    make_a1111_checkpoint(models, clip, "deep", seed=2, num_res_blocks=1)


# The SD1.5 layouts each Forge loader detects (see the docstring); the rest of each U-Net is SD1.5's
# (v1-inference.yaml): 320 channels, context 768, 8 heads, attention at ds 1, 2, 4.
SD15_UNETS = {"forge": dict(channel_mult=[1, 1, 1, 1], num_res_blocks=2), "forks": dict(channel_mult=[1, 1], num_res_blocks=1)}
UNET_OUTPUT_BLOCKS = {"forge": 12, "forks": 4}


def sd15_state_dict(kind: str, seed: int) -> dict:
    """The whole SD1.5-format state dict (U-Net, CLIP-L text model, VAE) of KIND, seeded random weights."""
    from skip_tuning_lab.comfy_host import boot_comfy
    boot_comfy()  # first: it lets the CUDA torchvision wheel that transformers imports load beside CPU torch
    import torch
    from ldm.modules.diffusionmodules.model import Decoder, Encoder
    from ldm.modules.diffusionmodules.openaimodel import UNetModel
    from tiny_models import fill_weights
    from transformers import CLIPTextConfig, CLIPTextModel

    unet = UNetModel(image_size=32, in_channels=4, out_channels=4, model_channels=320, attention_resolutions=[4, 2, 1],
                     num_heads=8, use_spatial_transformer=True, transformer_depth=1, context_dim=768,
                     use_checkpoint=False, legacy=False, **SD15_UNETS[kind])
    # CLIP-L's text model (openai/clip-vit-large-patch14), as the loaders' own configs build it.
    clip = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                                        num_hidden_layers=12, max_position_embeddings=77, hidden_act="quick_gelu",
                                        projection_dim=768))
    parts = {"model.diffusion_model.": unet, "cond_stage_model.transformer.": clip}
    if kind == "forge":  # SD's KL VAE (v1-inference.yaml first_stage_config)
        ddconfig = dict(double_z=True, z_channels=4, resolution=256, in_channels=3, out_ch=3, ch=128,
                        ch_mult=[1, 2, 4, 4], num_res_blocks=2, attn_resolutions=[], dropout=0.0)
        vae = torch.nn.Module()
        vae.encoder, vae.decoder = Encoder(**ddconfig), Decoder(**ddconfig)
        vae.quant_conv, vae.post_quant_conv = torch.nn.Conv2d(8, 8, 1), torch.nn.Conv2d(4, 4, 1)
    else:
        import comfy.taesd.taesd
        vae = comfy.taesd.taesd.TAESD()
        del vae.vae_shift  # not in a TAESD checkpoint (reForge ldm_patched/contrib/nodes.py 740-750)
    parts["first_stage_model."] = vae
    state = {}
    for i, (prefix, module) in enumerate(parts.items()):
        fill_weights(module, seed=seed * 10 + i)
        state.update({prefix + key: value.detach().to(torch.float16).contiguous()
                      for key, value in module.state_dict().items() if value.is_floating_point()})
    if kind == "forks":
        state["first_stage_model.vae_scale"] = torch.tensor(0.18215, dtype=torch.float16)  # SD1's latent scale
    return state


def make_sd15_checkpoints(kind: str, models: Path):
    from safetensors.torch import save_file

    models.mkdir(parents=True, exist_ok=True)
    for name, seed in (("tiny", 0), ("other", 1)):
        save_file(sd15_state_dict(kind, seed), str(models / f"{name}.safetensors"))


if __name__ == "__main__":
    kind, out = sys.argv[1], Path(sys.argv[2]).resolve()
    if kind == "a1111":
        # A1111's modules/paths.py puts this repository on sys.path; the builder needs only `ldm` from it.
        sys.path.insert(0, str(Path(sys.argv[3]) / "repositories" / "stable-diffusion-stability-ai"))
        make_a1111_checkpoints(out / "models", out / "clip")
    else:
        sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
        make_sd15_checkpoints(kind, out / "models")
