"""Skip Tuning on HunyuanDiT, the transformer that keeps the U-Net's long skips (comfy/ldm/hydit/models.py of
ComfyUI 0.3.75, HunYuanDiT.forward lines 367-390: blocks 0 .. depth//2 - 2 push their output, blocks past
depth // 2 pop one each and concatenate it, so the first popped is the deepest).

A tiny model built through ComfyUI's own `supported_models.HunyuanDiT` / `HunyuanDiT1` (the config
`model_detection` reads from a checkpoint: depth, hidden size; HunyuanDiT1 adds size and style conditioning),
shrunk: depth 8 (3 skips; the real DiT-g/2 has depth 40, 19 skips), hidden 64, 4 heads, text widths 32 (the
real CLIP 1024, mT5 2048) at the real token counts 77 and 256. Sampled with a real KSampler (euler, 3 steps,
CFG 2) with and without the Skip Tuning node.
"""
import copy
from dataclasses import dataclass

import pytest
import torch

import comfy.ldm.hydit.models
import comfy.model_base
import comfy.supported_models
import nodes as comfy_nodes

from test_comfy_compile import fresh_dynamo  # noqa: F401 (fixture)
from test_comfy_families import CFG, END, LONG_SKIP_DITS, RHO_BOTTOM, RHO_TOP, SCHEDULER, SEED, START, STEPS, \
    assert_scaled_inside
from test_comfy_patch import reference_rhos, run_node
from tiny_models import built_model

DEPTH = 8
SKIPS = DEPTH - DEPTH // 2 - 1  # blocks 5, 6, 7 pop the outputs of blocks 2, 1, 0
TEXT_WIDTH = 32
CLIP_TOKENS, MT5_TOKENS = 77, 256  # HunYuanDiT's text_len / text_len_t5 defaults, what its text encoders give
TINY = {"depth": DEPTH, "hidden_size": 64, "num_heads": 4, "text_states_dim": TEXT_WIDTH,
        "text_states_dim_t5": TEXT_WIDTH}
CLASSES = {"HunyuanDiT": {"image_model": "hydit"},
           # model_detection's hydit1 (an extra_embedder 3968 wide): size and style conditioning
           "HunyuanDiT1": {"image_model": "hydit1", "size_cond": True, "use_style_cond": True}}


def hydit_conditioning(seed, batch=1):
    """CONDITIONING as CLIPTextEncode makes it with the HunyuanDiT text encoders (comfy/text_encoders/hydit.py
    HyditModel.encode_token_weights, lines 64-67): the CLIP context, its attention mask, the mT5 output and its
    mask; masks cover a few real tokens so the model's learned padding fills the rest."""
    generator = torch.Generator().manual_seed(seed)

    def mask(tokens, real):
        out = torch.zeros(batch, tokens)
        out[:, :real] = 1.0
        return out

    return [[torch.randn(batch, CLIP_TOKENS, TEXT_WIDTH, generator=generator), {
        "attention_mask": mask(CLIP_TOKENS, 5),
        "conditioning_mt5xl": torch.randn(batch, MT5_TOKENS, TEXT_WIDTH, generator=generator),
        "attention_mask_mt5xl": mask(MT5_TOKENS, 7)}]]


def ksample(model, positive, negative):
    latent = {"samples": torch.zeros(1, 4, 16, 16)}
    (out,) = comfy_nodes.common_ksampler(model, SEED, STEPS, CFG, "euler", SCHEDULER, positive, negative, latent)
    return out["samples"]


@dataclass
class Built:
    class_name: str
    model: object
    plain: torch.Tensor

    def sample(self, model):
        with torch.no_grad():
            return ksample(model, hydit_conditioning(1), hydit_conditioning(2))


@pytest.fixture(scope="module", params=sorted(CLASSES))
def built(request, comfy_nodes_loaded):
    config = getattr(comfy.supported_models, request.param)({**CLASSES[request.param], **TINY})
    model = built_model(config, seed=0)
    with torch.no_grad():
        plain = ksample(model, hydit_conditioning(1), hydit_conditioning(2))
    return Built(request.param, model, plain)


def skip_blocks(model):
    return model.model.diffusion_model.blocks[DEPTH // 2 + 1:]


class ScaledSkips:
    """The reference, independent of the pack and of patches_replace: forward pre-hooks on the blocks that
    pop a skip, multiplying their `skip` argument (HunYuanDiTBlock.forward's 5th) by rhos[j], the deepest first."""

    def __init__(self, model, rhos):
        self.handles = [block.register_forward_pre_hook(self.scale(float(rho)))
                        for block, rho in zip(skip_blocks(model), rhos)]

    @staticmethod
    def scale(rho):
        def hook(module, args):
            x, c, text_states, freqs, skip = args
            return x, c, text_states, freqs, skip * rho
        return hook

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()


def tune(mappings, model, node_id="SkipTuning", **settings):
    inputs = {"rho_top": RHO_TOP, "rho_bottom": RHO_BOTTOM}
    inputs.update({"start_percent": 0.0, "end_percent": 1.0} if node_id == "SkipTuning" else
                  {"block_rhos": "", "ranges": "0.0-1.0"})
    (patched,) = run_node(mappings, node_id, model=model, **{**inputs, **settings})
    return patched


def test_every_long_skip_class_is_tested():
    assert set(CLASSES) == LONG_SKIP_DITS


def test_built_through_its_class(built):
    model = built.model
    assert type(model.model.model_config) is getattr(comfy.supported_models, built.class_name)
    assert type(model.model) is comfy.model_base.HunyuanDiT
    net = model.model.diffusion_model
    assert type(net) is comfy.ldm.hydit.models.HunYuanDiT and net.depth == DEPTH
    assert [i for i, block in enumerate(net.blocks) if block.skip_linear is not None] == [5, 6, 7]
    assert net.size_cond == net.use_style_cond == (built.class_name == "HunyuanDiT1")
    assert built.plain.shape == (1, 4, 16, 16) and torch.isfinite(built.plain).all()


def test_node_equals_the_hand_reference_and_changes_the_output(comfy_nodes_loaded, built):
    """Skip j (the deepest first) scaled by the paper's ramp over the whole run, bit for bit."""
    tuned = built.sample(tune(comfy_nodes_loaded, built.model))
    with ScaledSkips(built.model, reference_rhos(SKIPS, RHO_TOP, RHO_BOTTOM)):
        want = built.sample(built.model)
    assert torch.equal(tuned, want), f"max diff {(tuned - want).abs().max()}"
    assert (tuned - built.plain).abs().max() > 1e-3, "the node changed nothing"


def test_advanced_block_rhos_equal_the_hand_reference(comfy_nodes_loaded, built):
    rhos = [0.5, 1.3, 0.8]
    tuned = built.sample(tune(comfy_nodes_loaded, built.model, "SkipTuningAdvanced", block_rhos="0.5, 1.3, 0.8"))
    with ScaledSkips(built.model, rhos):
        want = built.sample(built.model)
    assert torch.equal(tuned, want), f"max diff {(tuned - want).abs().max()}"


def test_rho_one_is_bit_identical(comfy_nodes_loaded, built):
    assert torch.equal(built.sample(tune(comfy_nodes_loaded, built.model, rho_top=1.0, rho_bottom=1.0)),
                       built.plain)


class SkipRecorder:
    """Measures the rho each call applied: the skip a block pushed (a forward hook on blocks 0-2) against the one
    the popping block got (a `patches_replace["dit"]` replacement set before the node, which Skip Tuning keeps
    and runs on the scaled skip), per sigma (read by a model function wrapper)."""

    def __init__(self, model):
        self.sigma = None
        self.pushed, self.popped = {}, {}
        net = model.model.diffusion_model
        self.handles = [net.blocks[DEPTH // 2 - 2 - j].register_forward_hook(self.push(j)) for j in range(SKIPS)]
        self.model = model.clone()
        self.model.set_model_unet_function_wrapper(self.read_sigma())
        for j in range(SKIPS):
            self.model.set_model_patch_replace(self.pop(j), "dit", "double_block", DEPTH // 2 + 1 + j)

    def read_sigma(self):
        # A closure, not a bound method: ModelPatcher.clone deep-copies model_options, and with them the
        # instance a bound method holds.
        def wrapper(apply_model, args):
            self.sigma = float(args["timestep"].max())
            return apply_model(args["input"], args["timestep"], **args["c"])
        return wrapper

    def push(self, j):
        def hook(module, args, output):
            self.pushed[(self.sigma, j)] = output.clone()
        return hook

    def pop(self, j):
        def replacement(args, extra):
            self.popped[(self.sigma, j)] = args["skip"].clone()
            return extra["original_block"](args)
        return replacement

    def applied(self):
        """{sigma: [rho per skip]}, each a single ratio over the whole (cond + uncond) batch."""
        for handle in self.handles:
            handle.remove()
        out = {}
        for (sigma, j), popped in self.popped.items():
            ratio = (popped / self.pushed[(sigma, j)]).flatten()
            assert torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-5)
            out.setdefault(sigma, [None] * SKIPS)[j] = float(ratio[0])
        return out


def test_range_scales_exactly_the_steps_inside(comfy_nodes_loaded, built):
    """start 0.3 / end 0.7 scales a call exactly when its sigma lies in [sigma(0.7), sigma(0.3)] of the
    model's own schedule; a dit replacement set before the node still runs."""
    recorder = SkipRecorder(built.model)
    patched = tune(comfy_nodes_loaded, recorder.model, start_percent=START, end_percent=END)
    built.sample(patched)
    assert_scaled_inside(recorder.applied(), built.model.get_model_object("model_sampling"), SKIPS)


def test_chained_nodes_multiply(comfy_nodes_loaded, built):
    twice = tune(comfy_nodes_loaded, tune(comfy_nodes_loaded, built.model), rho_top=0.9, rho_bottom=0.9)
    rhos = reference_rhos(SKIPS, RHO_TOP, RHO_BOTTOM) * 0.9
    tuned = built.sample(twice)
    with ScaledSkips(built.model, rhos):
        want = built.sample(built.model)
    # Both multiply the two rhos in float64 and round the product to float32 once.
    assert torch.equal(tuned, want), f"max diff {(tuned - want).abs().max()}"


def test_base_model_unchanged(comfy_nodes_loaded, built):
    model = built.model
    options = copy.deepcopy(model.model_options)
    wrappers = copy.deepcopy(model.wrappers)
    weights = {k: v.clone() for k, v in model.model.diffusion_model.state_dict().items()}
    built.sample(tune(comfy_nodes_loaded, model, start_percent=0.2, end_percent=0.9))
    assert torch.equal(built.sample(model), built.plain)
    assert model.model_options == options and model.wrappers == wrappers
    for key, value in model.model.diffusion_model.state_dict().items():
        assert torch.equal(value, weights[key]), key


BAD = [
    ("SkipTuningAdvanced", dict(block_rhos="1, 0.9"), "block_rhos",
     "block_rhos has 2 values but this HunyuanDiT has 3 skips (counted on the model itself)"),
    ("SkipTuningAdvanced", dict(block_rhos="1, 0.9, 4"), "block_rhos, value 3 (skip 2)", "from 0 to 3"),
    ("SkipTuningAdvanced", dict(ranges="0-1: 1, 0.9, 0.8, 0.7"), "ranges line 1", "this HunyuanDiT has 3 skips"),
    ("SkipTuning", dict(rho_bottom=-1.0), "rho_bottom", "from 0 to 3"),
    ("SkipTuning", dict(start_percent=0.9, end_percent=0.1), "start_percent", "after end_percent"),
]


@pytest.mark.parametrize("node_id,settings,field,phrase", BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_input_names_the_field_and_range(comfy_nodes_loaded, built, node_id, settings, field, phrase):
    with pytest.raises(ValueError) as error:
        tune(comfy_nodes_loaded, built.model, node_id, **settings)
    assert type(error.value).__name__ == "SkipTuningError"
    message = str(error.value)
    assert message.startswith(field) and phrase in message, message



class FlatDiT(torch.nn.Module):
    """Stands for a transformer without long skips: HunyuanDiT blocks of which none pops a skip."""

    def __init__(self, blocks):
        super().__init__()
        self.blocks = torch.nn.ModuleList(blocks)


def test_refusal_names_hunyuan_dit_among_what_is_tuned(comfy_nodes_loaded):
    model = built_model(comfy.supported_models.HunyuanDiT({**CLASSES["HunyuanDiT"], **TINY}))
    net = model.model.diffusion_model
    model.model.diffusion_model = FlatDiT([block for block in net.blocks if block.skip_linear is None])
    with pytest.raises(ValueError) as error:
        tune(comfy_nodes_loaded, model)
    message = str(error.value)
    assert message.startswith("model: Skip Tuning needs a U-Net with skip connections") and \
        "or a transformer that keeps long skips (HunyuanDiT); this model (HunyuanDiT) has none" in message, message


def test_torch_compile_adds_no_graph_and_no_break_and_is_exact(comfy_nodes_loaded, built, fresh_dynamo):
    """ComfyUI's own compile wrapper (what TorchCompileModel installs), a counting backend: the tuned model
    compiles as many graphs and breaks as often as the untuned one (HunYuanDiT itself breaks the graph), though
    each call hands the blocks replacements of its own, and samples what eager sampling does."""
    from torch._dynamo.utils import counters

    from test_comfy_compile import CountingBackend, compiled

    figures = {}
    for name, model in (("plain", built.model), ("tuned", tune(comfy_nodes_loaded, built.model))):
        torch._dynamo.reset()
        counters.clear()
        backend = CountingBackend()
        fast, calls = compiled(model, backend)
        torch.testing.assert_close(built.sample(fast), built.sample(model), rtol=0, atol=1e-6)
        figures[name] = (backend.compiled, sum(counters["graph_break"].values()), backend.runs // len(calls))
    assert figures["tuned"] == figures["plain"]
