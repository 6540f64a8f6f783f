"""Every U-Net family of ComfyUI 0.3.75, locked in: one tiny model per `supported_models` class built on the
ldm/sgm `UNetModel` (and the variants its loader makes from them), built through the class's own `get_model`,
given the conditioning its nodes make, sampled with a real KSampler, with and without the Skip Tuning node.

A family's tiny `unet_config` is the one ComfyUI's `model_detection` reads from a real checkpoint, with the
same block structure (levels, res blocks per level, transformer depths in and out, middle block, in-channels,
ADM width where the model's conditioning fixes it) and narrow widths: model_channels 32, head width 16, a
32-wide cross-attention context where no node fixes it, the pooled text embedding shrunk (SDXL-like ADMs).
The other classes of `supported_models.models` are listed in NOT_UNET (their `get_model` builds no `UNetModel`
and no long skips) or LONG_SKIP_DITS (HunyuanDiT, tested in test_comfy_hydit.py).
"""
import copy
import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

import comfy.clip_vision
import comfy.model_base
import comfy.samplers
import comfy.supported_models
import node_helpers
import nodes as comfy_nodes

from test_comfy_patch import recorded, reference_rhos, run_node
from tiny_models import CONTEXT_DIM, POOLED_DIM, built_model, text_conditioning, tiny_vae

STEPS = 3
SCHEDULER = "simple"  # its steps sit at 0, 1/3 and 2/3 of the run: two inside [START, END], one outside
CFG = 2.0  # cond and uncond in one batched call
SEED = 5
RHO_TOP, RHO_BOTTOM = 1.0, 0.6
START, END = 0.3, 0.7
HEAD_CHANNELS = 16  # num_head_channels 64 at model_channels 32 would give 0 heads at the first level
SIZE = 128  # pixels: 16x16 latents
FRAMES = 3  # SVD / SV3D frame batch
KOLORS_POOLED = 2 * POOLED_DIM  # Kolors' ChatGLM pooled output (4096 wide) is wider than SDXL's (1280)

LDM = {"use_checkpoint": False, "image_size": 32, "use_spatial_transformer": True, "legacy": False,
       "in_channels": 4, "out_channels": 4, "model_channels": 32, "adm_in_channels": None,
       "use_temporal_resblock": False, "use_temporal_attention": False}
# Block structures as model_detection reads them from the real checkpoints (transformer_depth lists run
# shallow to deep; UNetModel pops transformer_depth_output from its end, so output block 0 is the deepest).
SD_LAYOUT = {"num_res_blocks": [2, 2, 2, 2], "channel_mult": [1, 2, 4, 4], "transformer_depth_middle": 1,
             "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
             "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]}
SD15 = {**LDM, **SD_LAYOUT, "use_linear_in_transformer": False, "context_dim": CONTEXT_DIM, "num_heads": 8}
SD2 = {**LDM, **SD_LAYOUT, "use_linear_in_transformer": True, "context_dim": CONTEXT_DIM, "num_head_channels": 64}
SDXL = {**LDM, "num_res_blocks": [2, 2, 2], "channel_mult": [1, 2, 4], "transformer_depth": [0, 0, 2, 2, 10, 10],
        "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10], "transformer_depth_middle": 10,
        "use_linear_in_transformer": True, "context_dim": CONTEXT_DIM, "num_head_channels": 64,
        "num_classes": "sequential", "adm_in_channels": POOLED_DIM + 6 * 256}  # pooled + 6 size embeddings
SSD1B = {**SDXL, "transformer_depth": [0, 0, 2, 2, 4, 4], "transformer_depth_output": [0, 0, 0, 1, 1, 2, 10, 4, 4],
         "transformer_depth_middle": -1}  # -1: the middle block is a res block alone
VEGA = {**SDXL, "transformer_depth": [0, 0, 1, 1, 2, 2], "transformer_depth_output": [0, 0, 0, 1, 1, 1, 2, 2, 2],
        "transformer_depth_middle": -1}
KOALA_700M = {**SDXL, "num_res_blocks": [1, 1, 1], "transformer_depth": [0, 2, 5],
              "transformer_depth_output": [0, 0, 2, 2, 5, 5], "transformer_depth_middle": -2}  # -2: no middle block
KOALA_1B = {**KOALA_700M, "transformer_depth": [0, 2, 6], "transformer_depth_output": [0, 0, 2, 2, 6, 6],
            "transformer_depth_middle": 6}
REFINER = {**SDXL, "num_res_blocks": [2, 2, 2, 2], "channel_mult": [1, 2, 4, 4],
           "transformer_depth": [0, 0, 4, 4, 4, 4, 0, 0],
           "transformer_depth_output": [0, 0, 0, 4, 4, 4, 4, 4, 4, 0, 0, 0],
           "transformer_depth_middle": 4, "adm_in_channels": POOLED_DIM + 5 * 256}  # pooled + 5 embeddings
SVD = {**SD2, "in_channels": 8, "num_classes": "sequential", "adm_in_channels": 3 * 256,  # fps, motion, augmentation
       "use_temporal_resblock": True, "use_temporal_attention": True, "extra_ff_mix_layer": True,
       "use_spatial_context": True, "merge_strategy": "learned_with_images", "merge_factor": 0.0,
       "video_kernel_size": [3, 1, 1], "disable_temporal_crossattention": False}
X4 = {**SD2, "in_channels": 7, "channel_mult": [1, 2, 2, 4], "transformer_depth": [0, 0, 1, 1, 1, 1, 1, 1],
      "transformer_depth_output": [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1]}  # 4 latent + 3 image channels


def v_prediction_key():
    """The key SD20.model_type reads: a spread-out norm bias in the last output block means a v model."""
    return {"output_blocks.11.1.transformer_blocks.0.norm1.bias": torch.linspace(-1.0, 1.0, 32)}


def zero123_projection():
    """Stable_Zero123.get_model reads its CLIP-image + camera (772) to context (768) projection from the state dict."""
    generator = torch.Generator().manual_seed(7)
    return {"cc_projection.weight": torch.randn(768, 772, generator=generator) / 772 ** 0.5,
            "cc_projection.bias": torch.zeros(768)}


@functools.cache
def vae():
    return tiny_vae(3)


def pixels(batch=1, size=SIZE):
    return torch.rand(batch, size, size, 3, generator=torch.Generator().manual_seed(11))


def empty_latent():
    return {"samples": torch.zeros(1, 4, SIZE // 8, SIZE // 8)}


class ImageEncoder:
    """Stands in for the CLIP_VISION that CLIPVisionLoader gives: `encode_image` returns an Output whose
    seeded `image_embeds` have the width the family's conditioning node passes on to the U-Net."""

    def __init__(self, width):
        self.width = width

    def encode_image(self, image, crop=True):
        output = comfy.clip_vision.Output()
        output["image_embeds"] = torch.randn(image.shape[0], self.width, generator=torch.Generator().manual_seed(13))
        return output


# Conditioning recipes: (node mappings, family) -> (positive, negative, latent), made by the nodes that make it.
def text(mappings, family, **negative_values):
    """CLIPTextEncode (SD, SDXL-like: CLIPTextEncodeSDXL's sizes and pooled output, the refiner's aesthetic score)."""
    values = dict(family.prompt)
    positive = text_conditioning(1, context_dim=family.unet["context_dim"], pooled_dim=family.pooled, **values)
    values.update(negative_values)
    negative = text_conditioning(2, context_dim=family.unet["context_dim"], pooled_dim=family.pooled, **values)
    return positive, negative, empty_latent()


def refiner(mappings, family):
    return text(mappings, family, aesthetic_score=2.5)


def inpaint(mappings, family):
    positive, negative, _ = text(mappings, family)
    mask = torch.zeros(1, SIZE, SIZE)
    mask[:, SIZE // 4:3 * SIZE // 4, SIZE // 4:3 * SIZE // 4] = 1.0
    return run_node(mappings, "InpaintModelConditioning", positive=positive, negative=negative, vae=vae(),
                    pixels=pixels(), mask=mask, noise_mask=True)


def pix2pix(mappings, family):
    positive, negative, _ = text(mappings, family)
    return run_node(mappings, "InstructPixToPixConditioning", positive=positive, negative=negative, vae=vae(),
                    pixels=pixels())


def unclip(mappings, family):
    positive, negative, latent = text(mappings, family)
    width = family.config_class.noise_aug_config["timestep_dim"]  # the CLIP image embedding's width
    image = ImageEncoder(width).encode_image(pixels())
    (positive,) = run_node(mappings, "unCLIPConditioning", conditioning=positive, clip_vision_output=image,
                           strength=1.0, noise_augmentation=0.1)
    return positive, negative, latent


def svd(mappings, family):
    """SVD_img2vid_Conditioning, plus the `time_conditioning` SVD_img2vid.extra_conds turns into `time_context`."""
    positive, negative, latent = run_node(
        mappings, "SVD_img2vid_Conditioning", clip_vision=ImageEncoder(family.unet["context_dim"]),
        init_image=pixels(), vae=vae(), width=SIZE, height=SIZE, video_frames=FRAMES, motion_bucket_id=127, fps=6,
        augmentation_level=0.0)
    time = {"time_conditioning": text_conditioning(17, context_dim=family.unet["context_dim"])[0][0]}
    return (node_helpers.conditioning_set_values(positive, time),
            node_helpers.conditioning_set_values(negative, time), latent)


def sv3d(mappings, family):
    return run_node(mappings, "SV3D_Conditioning", clip_vision=ImageEncoder(family.unet["context_dim"]),
                    init_image=pixels(), vae=vae(), width=SIZE, height=SIZE, video_frames=FRAMES, elevation=10.0)


def zero123(mappings, family):
    return run_node(mappings, "StableZero123_Conditioning", clip_vision=ImageEncoder(768), init_image=pixels(),
                    vae=vae(), width=SIZE, height=SIZE, batch_size=1, elevation=10.0, azimuth=30.0)


def x4_upscale(mappings, family):
    positive, negative, _ = text(mappings, family)
    return run_node(mappings, "SD_4XUpscale_Conditioning", images=pixels(size=SIZE // 8), positive=positive,
                    negative=negative, scale_ratio=4.0, noise_augmentation=0.2)


def lotus(mappings, family):
    (conditioning,) = run_node(mappings, "LotusConditioning")
    return conditioning, conditioning, empty_latent()


SDXL_SIZES = {"width": SIZE, "height": SIZE, "crop_w": 0, "crop_h": 0, "target_width": SIZE, "target_height": SIZE}
REFINER_PROMPT = {"width": SIZE, "height": SIZE, "aesthetic_score": 6.0}  # CLIPTextEncodeSDXLRefiner
SHRUNK = frozenset({"model_channels", "context_dim"})
SHRUNK_POOLED = SHRUNK | {"adm_in_channels"}  # SDXL-like: the pooled text embedding in `y` is narrow too


@dataclass(frozen=True)
class Family:
    id: str
    class_name: str  # in comfy.supported_models
    unet: dict  # the unet_config the loader would detect, shrunk
    output_blocks: int
    model_base: str  # the comfy.model_base class get_model builds
    model_type: str
    conditioning: Callable
    given: str  # what the conditioning holds, for the README
    pooled: int | None = None
    prompt: dict = field(default_factory=dict)
    state_dict: Callable | None = None  # the keys get_model reads from a checkpoint (model type, projections)
    shrunk: frozenset = SHRUNK  # where the tiny unet_config differs from the class's (what the loader matches on)

    @property
    def config_class(self):
        return getattr(comfy.supported_models, self.class_name)


def sdxl_like(id, class_name, unet, output_blocks=9, model_base="SDXL", model_type="EPS", conditioning=text,
              given="context; pooled output + sizes as `y`", pooled=POOLED_DIM, prompt=SDXL_SIZES, **more):
    return Family(id, class_name, unet, output_blocks, model_base, model_type, conditioning, given, pooled, prompt,
                  shrunk=SHRUNK_POOLED, **more)


FAMILIES = [
    Family("sd15", "SD15", SD15, 12, "BaseModel", "EPS", text, "context"),
    Family("sd2", "SD20", SD2, 12, "BaseModel", "EPS", text, "context"),
    Family("sd2_v", "SD20", SD2, 12, "BaseModel", "V_PREDICTION", text, "context", state_dict=v_prediction_key),
    Family("sd15_inpaint", "SD15", {**SD15, "in_channels": 9}, 12, "BaseModel", "EPS", inpaint,
           "context; InpaintModelConditioning: mask + masked image latent as `c_concat`, noise mask"),
    Family("sd15_ip2p", "SD15_instructpix2pix", {**SD15, "in_channels": 8}, 12, "SD15_instructpix2pix", "EPS",
           pix2pix, "context; InstructPixToPixConditioning: image latent as `c_concat`"),
    Family("sd21_unclip_l", "SD21UnclipL", {**SD2, "num_classes": "sequential", "adm_in_channels": 1536}, 12,
           "SD21UNCLIP", "EPS", unclip, "context; unCLIPConditioning: noise-augmented image embedding as `y`"),
    Family("sd21_unclip_h", "SD21UnclipH", {**SD2, "num_classes": "sequential", "adm_in_channels": 2048}, 12,
           "SD21UNCLIP", "EPS", unclip, "context; unCLIPConditioning: noise-augmented image embedding as `y`"),
    sdxl_like("sdxl", "SDXL", SDXL),
    sdxl_like("sdxl_inpaint", "SDXL", {**SDXL, "in_channels": 9}, conditioning=inpaint,
              given="context; `y`; InpaintModelConditioning `c_concat`, noise mask"),
    sdxl_like("sdxl_ip2p", "SDXL_instructpix2pix", {**SDXL, "in_channels": 8}, model_base="SDXL_instructpix2pix",
              conditioning=pix2pix, given="context; `y`; InstructPixToPixConditioning `c_concat`"),
    sdxl_like("playground_v2_5", "SDXL", SDXL, model_type="EDM", given="context; `y` (EDM schedule)",
              state_dict=lambda: {"edm_mean": torch.zeros(1, 4, 1, 1), "edm_std": torch.ones(1, 4, 1, 1)}),
    # Kolors: core ComfyUI has no Kolors loader; Kolors nodes build it with supported_models.SDXL and an ADM for
    # its wider ChatGLM pooled output (5632 = 4096 + 6 * 256 in the real model).
    sdxl_like("kolors", "SDXL", {**SDXL, "adm_in_channels": KOLORS_POOLED + 6 * 256}, pooled=KOLORS_POOLED,
              given="context; wider pooled output + sizes as `y`"),
    sdxl_like("sdxl_refiner", "SDXLRefiner", REFINER, output_blocks=12, model_base="SDXLRefiner",
              conditioning=refiner, given="context; pooled output + sizes + aesthetic score as `y`",
              prompt=REFINER_PROMPT),
    sdxl_like("ssd1b", "SSD1B", SSD1B),
    sdxl_like("segmind_vega", "Segmind_Vega", VEGA),
    sdxl_like("koala_700m", "KOALA_700M", KOALA_700M, output_blocks=6),
    sdxl_like("koala_1b", "KOALA_1B", KOALA_1B, output_blocks=6),
    Family("svd", "SVD_img2vid", SVD, 12, "SVD_img2vid", "V_PREDICTION_EDM", svd,
           f"SVD_img2vid_Conditioning: image embedding context, fps/motion/augmentation `y`, image latent "
           f"`c_concat`, {FRAMES}-frame batch (`num_video_frames`); `time_context`"),
    Family("sv3d_u", "SV3D_u", {**SVD, "adm_in_channels": 256}, 12, "SV3D_u", "V_PREDICTION_EDM", sv3d,
           f"SV3D_Conditioning: context, augmentation `y`, `c_concat`, {FRAMES} frames"),
    Family("sv3d_p", "SV3D_p", {**SVD, "adm_in_channels": 1280}, 12, "SV3D_p", "V_PREDICTION_EDM", sv3d,
           f"SV3D_Conditioning: context, per-frame elevation/azimuth `y`, `c_concat`, {FRAMES} frames"),
    # Stable_Zero123.extra_conds projects any context not 768 wide: the context keeps its real width.
    Family("stable_zero123", "Stable_Zero123", {**SD15, "in_channels": 8, "context_dim": 768}, 12, "Stable_Zero123",
           "EPS", zero123, "StableZero123_Conditioning: image + camera context (projected), `c_concat`",
           state_dict=zero123_projection, shrunk=frozenset({"model_channels"})),
    Family("sd_x4_upscaler", "SD_X4Upscaler", X4, 12, "SD_X4Upscaler", "V_PREDICTION", x4_upscale,
           "context; SD_4XUpscale_Conditioning: low-res image `c_concat`, noise level `y`"),
    # LotusConditioning's fixed prompt embedding is 1024 wide: the context keeps its real width.
    Family("lotus_d", "LotusD", {**SD2, "context_dim": 1024, "num_heads": 8, "num_head_channels": -1,
                                 "num_classes": "sequential", "adm_in_channels": 4}, 12, "Lotus", "IMG_TO_IMG", lotus,
           "LotusConditioning context; task embedding `y`", shrunk=frozenset({"model_channels"})),
]


# supported_models classes left out: their model_base builds Stable Cascade's StageC/StageB or a DiT (SD3's
# MMDiT, Flux, AuraFlow, PixArt, the video and audio transformers...), with no input_blocks / output_blocks
# and no long skips to tune; the node refuses such models (tests/test_comfy_errors.py).
NOT_UNET = frozenset({
    "Stable_Cascade_C", "Stable_Cascade_B", "SD3", "StableAudio", "AuraFlow", "PixArtAlpha", "PixArtSigma",
    "Flux", "FluxInpaint", "FluxSchnell", "Flux2", "GenmoMochi", "LTXV",
    "HunyuanVideo", "HunyuanVideoI2V", "HunyuanVideoSkyreelsI2V", "HunyuanVideo15", "HunyuanVideo15_SR_Distilled",
    "HunyuanImage21", "HunyuanImage21Refiner", "CosmosT2V", "CosmosI2V", "CosmosT2IPredict2", "CosmosI2VPredict2",
    "Lumina2", "ZImage", "WAN21_T2V", "WAN21_I2V", "WAN21_FunControl2V", "WAN21_Vace", "WAN21_Camera", "WAN22_Camera",
    "WAN22_S2V", "WAN21_HuMo", "WAN22_Animate", "WAN22_T2V", "Hunyuan3Dv2", "Hunyuan3Dv2_1", "Hunyuan3Dv2mini",
    "HiDream", "Chroma", "ChromaRadiance", "ACEStep", "Omnigen2", "QwenImage",
})
# Transformers that keep the U-Net's long skips, tuned and tested in tests/test_comfy_hydit.py.
LONG_SKIP_DITS = frozenset({"HunyuanDiT", "HunyuanDiT1"})


def build(family):
    """As ComfyUI's loader does: the class built on the detected unet_config, then its own get_model."""
    config = family.config_class(dict(family.unet))
    if config.unet_config.get("num_head_channels", -1) > 0:
        config.unet_config["num_head_channels"] = HEAD_CHANNELS
    with torch.no_grad():  # ComfyUI loads inside its executor's inference mode (Stable_Zero123 copies weights in)
        return built_model(config, family.state_dict() if family.state_dict else None, seed=0)


def ksample(model, run):
    """A real KSampler run (ComfyUI's common_ksampler) with the family's conditioning."""
    positive, negative, latent = run
    (out,) = comfy_nodes.common_ksampler(model, SEED, STEPS, CFG, "euler", SCHEDULER, positive, negative, latent)
    return out["samples"]


def hand_tuned(model, rhos):
    """The reference, independent of the pack: a clone whose own output-block patch multiplies the skip
    entering output block j by rhos[j]."""
    reference = model.clone()
    reference.set_model_output_block_patch(lambda h, hsp, options: (h, hsp * float(rhos[options["block"][1]])))
    return reference


@dataclass
class Built:
    family: Family
    model: object
    run: tuple
    plain: torch.Tensor  # sampled before any node touched the model


@pytest.fixture(scope="module", params=FAMILIES, ids=lambda family: family.id)
def built(request, comfy_nodes_loaded):
    family = request.param
    model = build(family)
    run = family.conditioning(comfy_nodes_loaded, family)
    with torch.no_grad():
        plain = ksample(model, run)
    return Built(family, model, run, plain)


def tune(mappings, model, **settings):
    (patched,) = run_node(mappings, "SkipTuning", model=model, **{
        "rho_top": RHO_TOP, "rho_bottom": RHO_BOTTOM, "start_percent": 0.0, "end_percent": 1.0, **settings})
    return patched


def test_every_supported_models_class_is_sorted():
    """Each class ComfyUI detects checkpoints with has a family here or is a known non-U-Net: a ComfyUI that
    adds a class fails here until it is sorted."""
    covered = {family.class_name for family in FAMILIES}
    assert {cls.__name__ for cls in comfy.supported_models.models} == covered | NOT_UNET | LONG_SKIP_DITS
    assert not covered & NOT_UNET and not (covered | NOT_UNET) & LONG_SKIP_DITS


def test_built_through_its_class_with_its_block_structure(built):
    """The class's own get_model made the model ComfyUI makes for such a checkpoint, with the real skips."""
    family, model = built.family, built.model
    config = model.model.model_config
    assert type(config) is family.config_class
    for key, value in family.config_class.unet_config.items():  # what the loader matches the class on
        if key not in family.shrunk:
            assert config.unet_config[key] == value, key
    assert type(model.model) is getattr(comfy.model_base, family.model_base)
    assert model.model.model_type.name == family.model_type
    unet = model.model.diffusion_model
    assert len(unet.output_blocks) == len(unet.input_blocks) == family.output_blocks
    if family.unet["adm_in_channels"]:
        assert unet.label_emb[0][0].in_features == family.unet["adm_in_channels"]
    assert built.plain.shape == built.run[2]["samples"].shape and torch.isfinite(built.plain).all()


def test_node_equals_the_hand_reference_and_changes_the_output(comfy_nodes_loaded, built):
    """Skip j scaled by the paper's ramp (deepest rho_bottom, shallowest rho_top) over the whole run."""
    rhos = reference_rhos(built.family.output_blocks, RHO_TOP, RHO_BOTTOM)
    with torch.no_grad():
        tuned = ksample(tune(comfy_nodes_loaded, built.model), built.run)
        want = ksample(hand_tuned(built.model, rhos), built.run)
    assert torch.equal(tuned, want), f"max diff {(tuned - want).abs().max()}"
    assert (tuned - built.plain).abs().max() > 1e-3, "the node changed nothing"


def test_rho_one_is_bit_identical(comfy_nodes_loaded, built):
    with torch.no_grad():
        identity = ksample(tune(comfy_nodes_loaded, built.model, rho_top=1.0, rho_bottom=1.0), built.run)
    assert torch.equal(identity, built.plain)


def test_range_scales_exactly_the_steps_inside(comfy_nodes_loaded, built):
    """start 0.3 / end 0.7 scales a call exactly when its sigma lies in [sigma(0.7), sigma(0.3)] of the
    model's own schedule (its model_sampling.percent_to_sigma)."""
    family, model = built.family, built.model
    patched, recorder = recorded(comfy_nodes_loaded, "SkipTuning", model, rho_top=RHO_TOP, rho_bottom=RHO_BOTTOM,
                                 start_percent=START, end_percent=END)
    with torch.no_grad():
        ksample(patched, built.run)
    assert_scaled_inside(recorder.applied(), model.get_model_object("model_sampling"), family.output_blocks)


def assert_scaled_inside(applied, sampling, skips):
    """`applied` ({sigma: rho per skip}, as measured) holds one call per step of the run on `sampling`, the ramp
    on exactly the two steps inside [sigma(END), sigma(START)] of its `percent_to_sigma`, 1 on the other.
    Returns the steps' sigmas."""
    sigmas = [float(s) for s in comfy.samplers.calculate_sigmas(sampling, SCHEDULER, STEPS)[:-1]]
    high, low = sampling.percent_to_sigma(START), sampling.percent_to_sigma(END)
    inside = {s for s in sigmas if low <= s <= high}
    assert len(inside) == 2, f"steps {sigmas}, range [{low}, {high}]"  # the steps at 1/3 and 2/3
    np.testing.assert_allclose(sorted(applied), sorted(sigmas), rtol=1e-6)  # one call per step, each recorded
    ramp = reference_rhos(skips, RHO_TOP, RHO_BOTTOM)
    scaled = 0
    for sigma, rhos in applied.items():
        want = ramp if any(np.isclose(sigma, s, rtol=1e-6) for s in inside) else np.ones(skips)
        np.testing.assert_allclose(rhos, want, rtol=1e-5, err_msg=f"sigma={sigma}")
        scaled += not np.allclose(rhos, 1.0)
    assert scaled == len(inside) == 2
    return sigmas


def test_base_model_unchanged(comfy_nodes_loaded, built):
    """The model given to the node samples the same bits afterwards, with the same options and weights."""
    model = built.model
    options = copy.deepcopy(model.model_options)
    wrappers = copy.deepcopy(model.wrappers)
    weights = {k: v.clone() for k, v in model.model.diffusion_model.state_dict().items()}
    with torch.no_grad():
        ksample(tune(comfy_nodes_loaded, model, start_percent=0.2, end_percent=0.9), built.run)
        after = ksample(model, built.run)
    assert torch.equal(after, built.plain)
    assert model.model_options == options and model.wrappers == wrappers
    for key, value in model.model.diffusion_model.state_dict().items():
        assert torch.equal(value, weights[key]), key
