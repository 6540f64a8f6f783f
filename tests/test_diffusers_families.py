"""skip_tuning_diffusers on the other diffusers U-Net families whose up blocks take skips: video U-Nets
(UNet3DConditionModel, AnimateDiff's UNetMotionModel, whose up blocks call their resnets with keywords) and the
x4 upscaler's UNet2DConditionModel (7 input channels, the noise level as class label). Each tiny random model,
tuned, equals its skips scaled on the up blocks' `res_hidden_states_tuple`, and comes back exactly on remove."""
import pytest
import torch

from harness import hooks_left
from test_comfy_patch import reference_rhos
from test_diffusers import diffusers, reference  # noqa: F401 (fixture)



def unet3d(lib, generator):
    unet = lib.UNet3DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=2,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"), up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=32)
    call = dict(sample=torch.randn(1, 4, 2, 8, 8, generator=generator), timestep=torch.tensor(500.0),
                encoder_hidden_states=torch.randn(1, 3, 32, generator=generator))
    return unet, call


def motion(lib, generator):
    """diffusers' own tiny UNetMotionModel (its tests/models/unets/test_models_unet_motion.py)."""
    unet = lib.UNetMotionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 32), layers_per_block=1,
        down_block_types=("CrossAttnDownBlockMotion", "DownBlockMotion"),
        up_block_types=("UpBlockMotion", "CrossAttnUpBlockMotion"), cross_attention_dim=16, num_attention_heads=2,
        norm_num_groups=16)
    call = dict(sample=torch.randn(1, 4, 2, 8, 8, generator=generator), timestep=torch.tensor(500.0),
                encoder_hidden_states=torch.randn(2, 4, 16, generator=generator))  # one per frame, as AnimateDiffPipeline passes it
    return unet, call


def x4_upscaler(lib, generator):
    """stabilityai/stable-diffusion-x4-upscaler's layout, narrow: the low-res image concatenated to the latents
    (7 channels) and the noise level as class label."""
    unet = lib.UNet2DConditionModel(
        sample_size=8, in_channels=7, out_channels=4, block_out_channels=(32, 32, 64), layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
        attention_head_dim=8, norm_num_groups=32, num_class_embeds=1000)
    call = dict(sample=torch.randn(1, 7, 8, 8, generator=generator), timestep=torch.tensor(500.0),
                encoder_hidden_states=torch.randn(1, 3, 32, generator=generator), class_labels=torch.tensor([20]))
    return unet, call


FAMILIES = {"UNet3DConditionModel": (unet3d, 6), "UNetMotionModel": (motion, 4), "x4 upscaler": (x4_upscaler, 9)}


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_equals_its_skips_scaled_on_the_up_blocks_and_comes_back_exactly(diffusers, family):
    lib, adapter = diffusers
    build, skips = FAMILIES[family]
    torch.manual_seed(0)
    unet, call = build(lib, torch.Generator().manual_seed(1))
    with torch.no_grad():
        for parameter in unet.parameters():  # diffusers zero-inits some outputs; random weights make every skip count
            parameter.normal_(0.0, 0.05)
    unet.eval()
    assert len(adapter.skip_resnets(unet)[0]) == skips
    rhos = reference_rhos(skips, 1.0, 0.5)
    with torch.no_grad():
        untuned = unet(**call).sample
        handles = reference(unet, rhos)
        expected = unet(**call).sample
        for handle in handles:
            handle.remove()
        with adapter.attach(unet, rho_top=1.0, rho_bottom=0.5):
            tuned = unet(**call).sample
        after = unet(**call).sample
    torch.testing.assert_close(tuned, expected, rtol=1e-5, atol=1e-6)
    assert (tuned - untuned).abs().max() > 1e-4
    assert torch.equal(after, untuned) and hooks_left(unet) == 0
