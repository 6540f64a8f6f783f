"""Tiny random diffusers Flux-family models and a FluxPipeline without text encoders (its prompt embeddings are
given), for the residual tuning tests and the SD.Next harness (no ComfyUI import)."""
import torch

FLUX = dict(patch_size=1, in_channels=16, num_layers=2, num_single_layers=3, attention_head_dim=8,
            num_attention_heads=2, joint_attention_dim=24, pooled_projection_dim=12, axes_dims_rope=(2, 2, 4))


def filled(model):
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.1)
    return model.eval()


def tiny_flux(lib):
    return filled(lib.FluxTransformer2DModel(**FLUX))


def tiny_chroma(lib):
    return filled(lib.ChromaTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=2, num_single_layers=3, attention_head_dim=8, num_attention_heads=2,
        joint_attention_dim=24, axes_dims_rope=(2, 2, 4), approximator_num_channels=8, approximator_hidden_dim=16,
        approximator_layers=1))


def tiny_flux_pipeline(lib):
    """FluxPipeline with no text encoders (prompt embeddings given) and a small VAE; the scheduler is Flux's
    (FLUX.1-dev scheduler_config.json: shift by resolution)."""
    vae = filled(lib.AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8,),
                                   down_block_types=("DownEncoderBlock2D",), up_block_types=("UpDecoderBlock2D",),
                                   norm_num_groups=4, layers_per_block=1, shift_factor=0.1159,
                                   scaling_factor=0.3611))
    scheduler = lib.FlowMatchEulerDiscreteScheduler(base_image_seq_len=256, base_shift=0.5, max_image_seq_len=4096,
                                                    max_shift=1.15, shift=3.0, use_dynamic_shifting=True)
    return lib.FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=None, tokenizer=None, text_encoder_2=None,
                            tokenizer_2=None, transformer=tiny_flux(lib))


def sample_flux(pipe, steps=10, **options):
    generator = torch.Generator().manual_seed(0)
    embeds = torch.randn(1, 5, 24, generator=generator)
    pooled = torch.randn(1, 12, generator=generator)
    return pipe(prompt_embeds=embeds, pooled_prompt_embeds=pooled, height=16, width=16, num_inference_steps=steps,
                guidance_scale=1.0, output_type="np", generator=torch.Generator().manual_seed(0), **options).images
