"""`sd_webui_ext.attach` on the original ldm U-Net (A1111's SD1.x/2.x) and an SDXL-structured openaimodel U-Net."""
import pytest
import torch
from ldm.modules.diffusionmodules.openaimodel import UNetModel as LdmUNet
from ldm.modules.diffusionmodules.util import timestep_embedding

from harness import hooks_left
from sd_webui_ext import attach
from skip_tuning_core import SkipTuningError

from test_comfy_patch import reference_rhos, reference_unet
from tiny_models import fill_weights, tiny_model

# SD1.x's config (v1-inference.yaml) and SD2.x's (v2-inference.yaml) at toy size.
LDM_CONFIGS = {
    "sd1": dict(image_size=16, in_channels=4, out_channels=4, model_channels=32, attention_resolutions=[2, 1],
                num_res_blocks=2, channel_mult=[1, 2, 2], num_heads=2, use_spatial_transformer=True,
                transformer_depth=1, context_dim=32, legacy=False),
    "sd2": dict(image_size=16, in_channels=4, out_channels=4, model_channels=32, attention_resolutions=[2, 1],
                num_res_blocks=2, channel_mult=[1, 2, 2], num_head_channels=16, use_spatial_transformer=True,
                use_linear_in_transformer=True, transformer_depth=1, context_dim=32, legacy=False),
}


def ldm_unet(kind):
    torch.manual_seed(0)
    unet = LdmUNet(**LDM_CONFIGS[kind]).eval()
    fill_weights(unet, seed=0)
    return unet


def ldm_forward(unet, x, timesteps, context, skip):
    """ldm's UNetModel.forward written out, with `skip(j, tensor)` applied to the skip entering block j."""
    emb = unet.time_embed(timestep_embedding(timesteps, unet.model_channels, repeat_only=False))
    skips, h = [], x
    for module in unet.input_blocks:
        h = module(h, emb, context)
        skips.append(h)
    h = unet.middle_block(h, emb, context)
    for j, module in enumerate(unet.output_blocks):
        h = module(torch.cat([h, skip(j, skips.pop())], dim=1), emb, context)
    return unet.out(h)


def ldm_reference(unet, x, timesteps, context, rhos):
    """The reference: skip j scaled by rhos[j]."""
    return ldm_forward(unet, x, timesteps, context, lambda j, tensor: tensor * float(rhos[j]))


class Case:
    """One U-Net with inputs, and a reference forward for a given rho per block."""

    def __init__(self, kind):
        generator = torch.Generator().manual_seed(1)
        self.x = torch.randn(2, 4, 16, 16, generator=generator)
        self.context = torch.randn(2, 4, 32, generator=generator)
        self.timesteps = torch.tensor([500.0, 500.0])
        if kind == "sdxl":
            self.unet = tiny_model("sdxl").model.diffusion_model
            self.y = torch.randn(2, self.unet.label_emb[0][0].in_features, generator=generator)
        else:
            self.unet, self.y = ldm_unet(kind), None
        self.kind = kind

    def run(self, timesteps=None):
        kwargs = {"y": self.y} if self.y is not None else {}
        with torch.no_grad():
            return self.unet(self.x, timesteps if timesteps is not None else self.timesteps, self.context, **kwargs)

    def reference(self, rhos):
        with torch.no_grad():
            if self.kind == "sdxl":
                return reference_unet(self.unet, self.x, self.timesteps, self.context, self.y, rhos)
            return ldm_reference(self.unet, self.x, self.timesteps, self.context, rhos)


KINDS = ["sd1", "sd2", "sdxl"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("rho_top,rho_bottom", [(1.0, 0.7), (0.9, 1.3)])
def test_attach_equals_reference_and_remove_restores_bits(kind, rho_top, rho_bottom):
    case = Case(kind)
    plain = case.run()
    n = len(case.unet.output_blocks)
    with attach(case.unet, rho_top=rho_top, rho_bottom=rho_bottom):
        got = case.run()
        assert hooks_left(case.unet) == len(case.unet.output_blocks) + 1  # every skip layer and the U-Net
    torch.testing.assert_close(got, case.reference(reference_rhos(n, rho_top, rho_bottom)), rtol=1e-5, atol=1e-5)
    assert torch.equal(case.run(), plain)
    assert hooks_left(case.unet) == 0


@pytest.mark.parametrize("kind", KINDS)
def test_rho_one_is_bit_identical_and_installs_nothing(kind):
    case = Case(kind)
    plain = case.run()
    with attach(case.unet, rho_top=1.0, rho_bottom=1.0):
        assert hooks_left(case.unet) == 0
        assert torch.equal(case.run(), plain)


@pytest.mark.parametrize("kind", KINDS)
def test_range_uses_the_timestep_of_each_call(kind):
    """start/end percent of the run map to timesteps 999..0; calls outside are untouched."""
    case = Case(kind)
    n = len(case.unet.output_blocks)
    outside = case.run(torch.tensor([900.0, 900.0]))
    with attach(case.unet, rho_bottom=0.5, start_percent=0.4, end_percent=0.6):  # t from 599.4 down to 399.6
        assert torch.equal(case.run(torch.tensor([900.0, 900.0])), outside)
        inside = case.run()
    torch.testing.assert_close(inside, case.reference(reference_rhos(n, 1.0, 0.5)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_exception_mid_forward_leaves_no_hook(kind):
    case = Case(kind)
    plain = case.run()
    with pytest.raises(RuntimeError, match="boom"):
        with attach(case.unet, rho_bottom=0.5):
            def explode(module, args):
                raise RuntimeError("boom")
            bomb = case.unet.out.register_forward_pre_hook(explode)  # after every skip hook ran
            try:
                case.run()
            finally:
                bomb.remove()
    assert hooks_left(case.unet) == 0
    assert torch.equal(case.run(), plain)


def test_condition_false_leaves_the_call_unscaled():
    case = Case("sd1")
    plain = case.run()
    allowed = {"now": False}
    with attach(case.unet, rho_bottom=0.5, condition=lambda: allowed["now"]):
        assert torch.equal(case.run(), plain)
        allowed["now"] = True
        assert not torch.equal(case.run(), plain)


def test_non_unet_module_is_refused_by_name():
    with pytest.raises(SkipTuningError, match="unet: Skip Tuning needs a U-Net.*Linear.*Flux"):
        attach(torch.nn.Linear(4, 4))


def test_sigma_is_read_once_per_call(monkeypatch):
    """GPU-ready: the timestep's value is read once per U-Net call, not once per block."""
    case = Case("sd1")
    calls = [torch.tensor([500.0, 500.0]), torch.tensor([400.0, 400.0])]
    reads = []
    original = torch.Tensor.max

    def counting_max(self, *args, **kwargs):
        if any(self is t for t in calls):
            reads.append(1)
        return original(self, *args, **kwargs)

    with attach(case.unet, rho_bottom=0.5):
        assert hooks_left(case.unet) == len(case.unet.output_blocks) + 1
        monkeypatch.setattr(torch.Tensor, "max", counting_max)
        for timesteps in calls:
            case.run(timesteps)
        monkeypatch.undo()
    assert len(reads) == len(calls)


def test_attach_works_when_controlnet_replaces_the_forward():
    """sd-webui-controlnet swaps in its own forward (adding control to the skips) but still calls the
    U-Net module and its output blocks; the skip with its control residual is what gets scaled."""
    case = Case("sd1")
    unet = case.unet

    def controlnet_forward(x, timesteps=None, context=None, **kwargs):
        return ldm_forward(unet, x, timesteps, context, lambda j, tensor: tensor + 0.1 * tensor)

    unet.forward = controlnet_forward
    with attach(unet, rho_bottom=0.6):
        got = case.run()
    del unet.forward
    rhos = reference_rhos(len(unet.output_blocks), 1.0, 0.6) * 1.1
    torch.testing.assert_close(got, case.reference(rhos), rtol=1e-5, atol=1e-5)
