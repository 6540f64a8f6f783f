"""Skip Tuning with AnimateDiff-Evolved 1.5.7 (../shared/hosts/comfyui-animatediff-evolved-*.tar.gz, unpacked
into the ignored .hosts/ and loaded through ComfyUI 0.3.75's own `load_custom_node`), wired as a user wires its
Gen2 nodes: ADE_LoadAnimateDiffModel -> ADE_ApplyAnimateDiffModelSimple -> ADE_UseEvolvedSampling, with the Skip
Tuning node before or after ADE_UseEvolvedSampling, sampled with a real KSampler over a 4-frame latent batch.

ADE injects its motion modules into the U-Net's input, middle and output blocks when sampling starts
(animatediff/motion_module_ad.py, AnimateDiffModel.inject/_inject, lines 514-566) and runs them through a
forward_timestep_embed patch; the skip is still concatenated by ComfyUI's UNetModel, where the output-block patch
scales it. With beta_schedule "autoselect" ADE samples on its own sqrt_linear schedule (an object patch of
`model_sampling`, animatediff/nodes_gen2.py lines 67-81), so a range must be resolved on that schedule.

The tiny motion model is ADE's own AnimateDiffModel (v2: down, mid and up blocks) with every
VanillaTemporalModule built at a tenth of the real widths (320/640/1280 -> 32/64/128, the widths of the SD1.5
family U-Net of test_comfy_families), seeded random weights (ADE zero-initialises proj_out, which would make
the motion modules identities), saved whole as ADE's loader reads the structure from the key names.
"""
import asyncio
import copy
import sys

import pytest
import torch

import comfy.utils
import folder_paths
import nodes as comfy_nodes

from skip_tuning_lab.hosts import host_tree
from test_comfy_families import CFG, END, FAMILIES, RHO_BOTTOM, RHO_TOP, SCHEDULER, SEED, START, STEPS, \
    assert_scaled_inside, build, hand_tuned
from test_comfy_patch import SkipRecorder, reference_rhos, run_node
from tiny_models import fill_weights, text_conditioning

FRAMES = 4
WIDTH_DIVISOR = 10  # motion modules at 32/64/128 channels, the tiny SD1.5 U-Net's widths
MOTION_MODEL = "tiny_mm_v2.safetensors"
(SD15,) = [family for family in FAMILIES if family.id == "sd15"]
BLOCKS = SD15.output_blocks


@pytest.fixture(scope="module")
def ade(comfy_nodes_loaded, tmp_path_factory):
    """ADE's node classes and its motion_module_ad module, with a tiny motion model in its models folder."""
    try:
        root = host_tree("comfyui-animatediff-evolved")
    except FileNotFoundError as error:
        pytest.skip(str(error))
    models = tmp_path_factory.mktemp("models")
    saved_models_dir = folder_paths.models_dir
    folder_paths.models_dir = str(models)  # ADE registers and creates its folders under it at import
    try:
        if not asyncio.run(comfy_nodes.load_custom_node(str(root))):
            raise RuntimeError(f"ComfyUI could not load {root}")
    finally:
        folder_paths.models_dir = saved_models_dir
    package = str(root).replace(".", "_x_")  # the module name load_custom_node gives a folder
    motion = sys.modules[package + ".animatediff.motion_module_ad"]
    real_get_motion_module = motion.get_motion_module

    def narrow_motion_module(in_channels, *args, **kwargs):
        return real_get_motion_module(in_channels // WIDTH_DIVISOR, *args, **kwargs)

    motion.get_motion_module = narrow_motion_module  # MotionModule.__init__ looks it up at each call
    # The key names ADE's normalize_ad_state_dict and AnimateDiffModel.__init__ read the structure from: an
    # SD1.5 module (down_blocks.3), v2 (mid_block), 32 frames of positional encoding, 2 attention blocks.
    pe = "motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.1.pos_encoder.pe"
    layout = {f"{block}.{pe}": torch.zeros(1, 32, 1) for block in ("down_blocks.3", "up_blocks.3", "mid_block")}
    info = motion.AnimateDiffInfo(sd_type="SD1.5", mm_format=motion.AnimateDiffFormat.ANIMATEDIFF,
                                  mm_version=motion.AnimateDiffVersion.V2, mm_name=MOTION_MODEL)
    module = motion.AnimateDiffModel(mm_state_dict=layout, mm_info=info)
    fill_weights(module, seed=21)
    (models / "animatediff_models").mkdir(exist_ok=True)
    comfy.utils.save_torch_file(module.state_dict(), str(models / "animatediff_models" / MOTION_MODEL))
    yield comfy_nodes.NODE_CLASS_MAPPINGS, motion
    motion.get_motion_module = real_get_motion_module


@pytest.fixture(scope="module")
def sd15():
    return build(SD15)


def evolved(mappings, model, windows=False):
    """The user's Gen2 chain: load the motion model, apply it, use evolved sampling (beta_schedule autoselect),
    with `windows` over sliding context windows of 2 frames overlapping by 1 (3 U-Net calls per step)."""
    (motion_model,) = run_node(mappings, "ADE_LoadAnimateDiffModel", model_name=MOTION_MODEL)
    (m_models,) = run_node(mappings, "ADE_ApplyAnimateDiffModelSimple", motion_model=motion_model)
    context = {}
    if windows:
        (context["context_options"],) = run_node(mappings, "ADE_StandardStaticContextOptions", context_length=2,
                                                 context_overlap=1)
    (out,) = run_node(mappings, "ADE_UseEvolvedSampling", model=model, beta_schedule="autoselect", m_models=m_models,
                      **context)
    return out


def skip_tuning(mappings, model, **settings):
    (out,) = run_node(mappings, "SkipTuning", model=model, **{
        "rho_top": RHO_TOP, "rho_bottom": RHO_BOTTOM, "start_percent": 0.0, "end_percent": 1.0, **settings})
    return out


def ksample(model):
    positive = text_conditioning(1, FRAMES, context_dim=SD15.unet["context_dim"])
    negative = text_conditioning(2, FRAMES, context_dim=SD15.unet["context_dim"])
    latent = {"samples": torch.zeros(FRAMES, 4, 16, 16)}
    with torch.no_grad():
        (out,) = comfy_nodes.common_ksampler(model, SEED, STEPS, CFG, "euler", SCHEDULER, positive, negative, latent)
    return out["samples"]


def chain(mappings, model, tune, order, windows=False):
    """`tune` (a MODEL -> MODEL step) placed before or after ADE_UseEvolvedSampling."""
    if order == "before":
        return evolved(mappings, tune(model), windows)
    return tune(evolved(mappings, model, windows))


ORDERS = ["before", "after"]


def test_motion_modules_are_injected_and_move_the_frames(ade, sd15):
    """The tiny motion model loads through ADE's own loader and changes the video (its frames interact)."""
    mappings, motion = ade
    injected = []
    hook = motion.VanillaTemporalModule.forward
    motion.VanillaTemporalModule.forward = lambda self, *a, **k: injected.append(self.block_type) or hook(self, *a, **k)
    try:
        video = ksample(evolved(mappings, sd15))
    finally:
        motion.VanillaTemporalModule.forward = hook
    # 8 down + 1 mid + 12 up modules, once per step (cond and uncond in one batch).
    assert len(injected) == STEPS * 21 and injected.count("mid") == STEPS
    assert video.shape == (FRAMES, 4, 16, 16) and torch.isfinite(video).all()
    assert (video - ksample(sd15)).abs().max() > 1e-3


@pytest.mark.parametrize("windows", [False, True], ids=["whole", "context_windows"])
@pytest.mark.parametrize("order", ORDERS)
def test_node_equals_the_hand_reference(ade, sd15, order, windows):
    """Skip Tuning before or after ADE_UseEvolvedSampling, over all frames at once or ADE's sliding context
    windows: the hand reference's output (an output-block patch of the test's own scaling by the ramp, placed at
    the same point), bit for bit, and differs from untuned."""
    mappings, _ = ade
    rhos = reference_rhos(BLOCKS, RHO_TOP, RHO_BOTTOM)
    tuned = ksample(chain(mappings, sd15, lambda m: skip_tuning(mappings, m), order, windows))
    want = ksample(chain(mappings, sd15, lambda m: hand_tuned(m, rhos), order, windows))
    plain = ksample(evolved(mappings, sd15, windows))
    assert torch.equal(tuned, want), f"max diff {(tuned - want).abs().max()}"
    assert (tuned - plain).abs().max() > 1e-3


def test_context_windows_split_the_frames(ade, sd15):
    """The windowed runs above are windowed: 3 windows of 2 frames per step, each a U-Net call of 2 frames for
    cond and uncond."""
    mappings, _ = ade
    batches = []
    hook = sd15.model.diffusion_model.register_forward_pre_hook(lambda module, args: batches.append(args[0].shape[0]))
    try:
        ksample(chain(mappings, sd15, lambda m: skip_tuning(mappings, m), "after", windows=True))
    finally:
        hook.remove()
    assert batches == [2 * 2] * (3 * STEPS)


@pytest.mark.parametrize("order", ORDERS)
def test_rho_one_is_bit_identical(ade, sd15, order):
    mappings, _ = ade
    identity = chain(mappings, sd15, lambda m: skip_tuning(mappings, m, rho_top=1.0, rho_bottom=1.0), order)
    assert torch.equal(ksample(identity), ksample(evolved(mappings, sd15)))


@pytest.mark.parametrize("order", ORDERS)
def test_range_is_read_on_the_schedule_ade_samples_with(ade, sd15, order):
    """ADE's autoselected sqrt_linear schedule puts different sigmas at the same percents from the model's own; the
    range 0.3-0.7 scales exactly the steps inside it on the schedule sampled (steps at sigma 25.1, 4.50, 1.21;
    the range [1.07, 5.21] there, [0.83, 3.33] on the SD model's own schedule)."""
    mappings, _ = ade
    recorder = SkipRecorder()

    def tune(model):
        model = model.clone()
        model.set_model_output_block_patch(recorder.patch(recorder.before))
        model = skip_tuning(mappings, model, start_percent=START, end_percent=END)
        model.set_model_output_block_patch(recorder.patch(recorder.after))
        return model

    model = chain(mappings, sd15, tune, order)
    ksample(model)
    sampled = model.get_model_object("model_sampling")
    own = sd15.get_model_object("model_sampling")
    assert sampled is not own
    sigmas = assert_scaled_inside(recorder.applied(), sampled, BLOCKS)
    # Resolved on the SD model's own schedule the range would hold one step less (sigma 4.50 > own(0.3) = 3.33).
    assert len({s for s in sigmas if own.percent_to_sigma(END) <= s <= own.percent_to_sigma(START)}) == 1


def test_base_model_unchanged(ade, sd15):
    """After tuned ADE runs in both orders the SD model samples the same bits, its U-Net without motion modules."""
    mappings, _ = ade
    before = ksample(sd15)
    options, wrappers = copy.deepcopy(sd15.model_options), copy.deepcopy(sd15.wrappers)
    keys = set(sd15.model.diffusion_model.state_dict())
    for order in ORDERS:
        ksample(chain(mappings, sd15, lambda m: skip_tuning(mappings, m), order))
    assert torch.equal(ksample(sd15), before)
    assert sd15.model_options == options and sd15.wrappers == wrappers
    assert set(sd15.model.diffusion_model.state_dict()) == keys
