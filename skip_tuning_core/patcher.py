"""Skip Tuning on hosts with ComfyUI's model patcher: ComfyUI, Forge, reForge and Forge Classic.

Such a host calls `h, hsp = patch(h, hsp, transformer_options)` before U-Net output block j concatenates the
skip `hsp` to `h`, with `transformer_options["block"] == ("output", j)`. Two pieces share the work:
- a wrapper around the model call (outside the U-Net, so outside a `torch.compile`d one) reads the noise
  level once per call and resolves the ranges on the model actually sampled, so a node placed before
  ModelSamplingDiscrete (or any schedule change) means what it says;
- the output-block patch only multiplies by the per-block factors the wrapper handed it as tensors, so a
  compiled U-Net stays one graph and a new rho value compiles nothing new.
Every Skip Tuning applied to one model (chained nodes) is one entry of a tuple; their factors multiply.

HunyuanDiT (comfy/ldm/hydit/models.py) keeps the U-Net's long skips in a transformer: each block past
depth // 2 concatenates a popped skip and projects it back (`skip_linear`). It has no output-block patch, and
its `patches_replace["dit"]` block replacements get no transformer_options, so the same wrapper hands each
call replacements of its own that scale the popped skip and run the block (or the replacement already there).
"""
from dataclasses import dataclass

from .presets import load_findings
from .schedule import UNET_NAMES, SkipNames, SkipPlan, SkipTuningError, make_ranges

TUNERS = "skip_tuning"  # model_options["transformer_options"]: every Skip Tuning applied to this model
SCALES = "skip_tuning_scales"  # one model call's transformer_options: a factor tensor per block
RESIDUAL_TUNERS = "residual_tuning"  # every Residual Tuning applied to this model (skip_tuning_core/residual.py)
RESIDUAL_SCALES = "residual_tuning_scales"  # one call's: per residual tuner, a rho tensor per chosen block
WRAPPER_KEY = "skip_tuning"
APPLY_MODEL = "apply_model"  # comfy.patcher_extension.WrappersMP.APPLY_MODEL (ComfyUI >= 2024-12, reForge)
SUPPORTED = "SD1.x, SD2.x, SDXL, SVD, the x4 upscaler and the other checkpoints built on the ldm/sgm UNetModel"
DIT_SUPPORTED = "a transformer that keeps long skips (HunyuanDiT)"  # only through a model patcher
DIT_NAMES = SkipNames("HunyuanDiT", "skip")
DIT_BLOCK = "double_block"  # the key HunYuanDiT.forward looks its blocks up with in patches_replace["dit"]


def unsupported_message(model_name: str, also: str = "") -> str:
    """What every host says when a model has no skips to tune; `also` names what else this host tunes. For the
    DiTs it refuses it says what the lab measured of residual tuning, the alternative suggested for them."""
    residual = load_findings().get("residual")
    return (f"Skip Tuning needs a U-Net with skip connections ({SUPPORTED}){' or ' + also if also else ''}; this "
            f"model ({model_name}) has none. Flux, SD3 and the other transformer (DiT) models without long skips "
            f"have nothing for it to scale." + (f" {residual} For Flux and Chroma it is offered as Residual Tuning "
                                                "(experimental)." if residual else ""))


@dataclass(frozen=True)
class SkipLayout:
    """Where a model's long skips are: `count` of them, deepest first; `dit_blocks` the indices of the HunyuanDiT
    blocks that pop them (empty for a U-Net, whose output block j pops skip j)."""
    count: int
    dit_blocks: tuple = ()

    @property
    def names(self) -> SkipNames:
        return DIT_NAMES if self.dit_blocks else UNET_NAMES


def skip_layout(patcher) -> SkipLayout:
    """The patcher's skips, counted on the model itself; a SkipTuningError naming the model when it has none."""
    base_model = getattr(patcher, "model", None)
    net = getattr(base_model, "diffusion_model", None)
    blocks = getattr(net, "output_blocks", None)
    if hasattr(net, "input_blocks") and blocks is not None and len(blocks) > 0:
        return SkipLayout(len(blocks))
    # HunYuanDiT gives `skip_linear` to exactly the blocks that pop a skip; they pop the deepest first.
    dit_blocks = tuple(i for i, block in enumerate(getattr(net, "blocks", None) or ())
                       if getattr(block, "skip_linear", None) is not None)
    if dit_blocks:
        return SkipLayout(len(dit_blocks), dit_blocks)
    name = type(base_model if base_model is not None else patcher).__name__
    raise SkipTuningError("model: " + unsupported_message(name, DIT_SUPPORTED))


def output_block_count(patcher) -> int:
    """How many skips the patcher's model has (SDXL base 9; SD1.x/2.x and the SDXL refiner 12; HunyuanDiT 19)."""
    return skip_layout(patcher).count


class SkipTuner:
    """One Skip Tuning setting; resolves its percent ranges to noise levels on the schedule it is sampled with."""

    def __init__(self, ranges, num_blocks: int, dit_blocks: tuple = ()):
        self.ranges = tuple(ranges)
        self.num_blocks = num_blocks
        self.dit_blocks = dit_blocks
        self._schedule = None
        self._plan = None

    def __deepcopy__(self, memo):
        # ModelPatcher.clone deep-copies model_options; the settings never change, only the cached plan.
        return self

    def rhos_at(self, schedule, sigma: float):
        """The per-block rhos at this sigma of `schedule` (its `percent_to_sigma`), or None outside every range."""
        if self._schedule is not schedule:
            self._plan = SkipPlan(self.ranges, self.num_blocks, schedule.percent_to_sigma)
            self._schedule = schedule
        return self._plan.rhos_at(sigma)


def block_factors(tuners, schedule, sigma: float):
    """The product of every tuner's rhos at this sigma, or None when none of them applies."""
    factors = None
    for tuner in tuners:
        rhos = tuner.rhos_at(schedule, sigma)
        if rhos is not None:
            factors = rhos if factors is None else tuple(a * b for a, b in zip(factors, rhos))
    return factors


def sampling_schedule(model):
    """The noise schedule of the model being sampled: `model_sampling` (ComfyUI, reForge, Forge Classic,
    after any ModelSampling* node's object patch) or Forge main's `predictor`."""
    schedule = getattr(model, "model_sampling", None)
    return schedule if schedule is not None else model.predictor


def with_scales(transformer_options: dict, model, x, sigma) -> dict:
    """This call's transformer_options with the factor tensors for the patch (the one host read of sigma).

    Every call of a tuned model gets a factor for every block, 1 outside every range: the compiled U-Net's
    graph never depends on the step, even where the host has dynamo skip its guards on transformer_options
    (ComfyUI 0.38's TorchCompileModel passes such a guard_filter_fn)."""
    tuners, residual = transformer_options.get(TUNERS), transformer_options.get(RESIDUAL_TUNERS)
    if not tuners and not residual:
        return transformer_options
    schedule, level = sampling_schedule(model), float(sigma.max())
    if residual:
        transformer_options = {**transformer_options,
                               RESIDUAL_SCALES: residual_scales(residual, schedule, x, level)}
    if not tuners:
        return transformer_options
    factors = block_factors(tuners, schedule, level)
    values = x.new_tensor(factors or (1.0,) * tuners[0].num_blocks)  # one small copy per call, none per block
    scales = values.unbind()
    transformer_options = {**transformer_options, SCALES: scales}
    if tuners[0].dit_blocks:
        transformer_options = with_dit_skip_scales(transformer_options, tuners[0].dit_blocks, scales)
    return transformer_options


def residual_scales(tuners, schedule, x, sigma: float) -> tuple:
    """Per residual tuner, its rho for each chosen block at this sigma (1 outside its ranges), as tensors like
    Skip Tuning's factors: one small copy per call."""
    return tuple(x.new_tensor(tuner.rhos_at(schedule, sigma) or (1.0,) * tuner.num_blocks).unbind()
                 for tuner in tuners)


def with_dit_skip_scales(transformer_options: dict, dit_blocks, scales) -> dict:
    """A copy of transformer_options whose `patches_replace["dit"]` scales the skip each block pops; a
    replacement another node set for that block still runs, on the scaled skip. Nothing shared is changed."""
    patches = dict(transformer_options.get("patches_replace", {}))
    replace = dict(patches.get("dit", {}))
    for layer, scale in zip(dit_blocks, scales):
        replace[(DIT_BLOCK, layer)] = dit_skip_replacement(scale, replace.get((DIT_BLOCK, layer)))
    patches["dit"] = replace
    return {**transformer_options, "patches_replace": patches}


def dit_skip_replacement(scale, inner):
    """A HunYuanDiT block replacement: `args["skip"]` (the popped skip, plus any ControlNet residual) times scale."""
    def scaled_skip(args, extra):
        args = {**args, "skip": args["skip"] * scale}
        return inner(args, extra) if inner is not None else extra["original_block"](args)
    return scaled_skip


def apply_model_wrapper(executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options={},
                        **kwargs):
    """ComfyUI's APPLY_MODEL wrapper: `executor.class_obj` is the BaseModel being sampled, `t` its sigma."""
    transformer_options = with_scales(transformer_options, executor.class_obj, x, t)
    return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)


def chained_function_wrapper(inner, model):
    """A `model_function_wrapper` (Forge, Forge Classic: no APPLY_MODEL wrappers) that keeps `inner`, if any.

    The schedule is read on the model `apply_model` is bound to, or on `model` (the patcher's) where the host
    handed a plain function: Forge Neo's built-in Torch Compile replaces `apply_model` with a compiled one."""
    def skip_tuning_function_wrapper(apply_model, args):
        c = dict(args["c"])
        c["transformer_options"] = with_scales(c.get("transformer_options", {}),
                                               getattr(apply_model, "__self__", model), args["input"], args["timestep"])
        args = {**args, "c": c}
        if inner is not None:
            return inner(apply_model, args)
        return apply_model(args["input"], args["timestep"], **c)
    return skip_tuning_function_wrapper


def output_block_patch(h, hsp, transformer_options):
    """Scale the skip by this call's factor for the block."""
    scales = transformer_options.get(SCALES)
    if scales is None:  # a call that did not go through the wrapper (another host path): leave it
        return h, hsp
    # A new tensor: the host (ControlNet, other patches) may still hold the skip it passed in.
    return h, hsp * scales[transformer_options["block"][1]]


def is_tuned(patcher) -> bool:
    """Whether Skip Tuning is already installed on this patcher."""
    return bool(patcher.model_options.get("transformer_options", {}).get(TUNERS))


def gated(patcher) -> bool:
    """Whether the wrapper that reads each call's noise level is on this patcher (Skip or Residual Tuning)."""
    options = patcher.model_options.get("transformer_options", {})
    return bool(options.get(TUNERS) or options.get(RESIDUAL_TUNERS))


def install_gate(patched, function_wrapper: bool = False) -> None:
    """The wrapper around the model call that hands every tuner's factors to this call's transformer_options.
    `function_wrapper` gates from a `model_function_wrapper` even on a patcher with APPLY_MODEL wrappers: the
    WebUI forks' samplers (reForge's modules_forge/forge_sampler.py) call `sampling_function` with the
    patcher's `model_options` alone, so its wrappers never run there."""
    if hasattr(patched, "add_wrapper_with_key") and not function_wrapper:
        patched.add_wrapper_with_key(APPLY_MODEL, WRAPPER_KEY, apply_model_wrapper)
    else:
        patched.set_model_unet_function_wrapper(
            chained_function_wrapper(patched.model_options.get("model_function_wrapper"), patched.model))


def skip_tuned(patcher, function_wrapper: bool = False, **settings):
    """A clone of `patcher` with its skips scaled per `settings` (make_ranges' keywords); `patcher` is untouched.

    Applied to a model that is already tuned, the factors multiply. All-1 settings install nothing.
    `function_wrapper`: see `install_gate`.
    """
    layout = skip_layout(patcher)
    tuner = SkipTuner(make_ranges(layout.count, names=layout.names, **settings), layout.count, layout.dit_blocks)
    patched = patcher.clone()
    if all(rho == 1.0 for skip_range in tuner.ranges for rho in skip_range.rhos):
        return patched
    first, gate = not is_tuned(patched), not gated(patched)
    options = patched.model_options.setdefault("transformer_options", {})
    options[TUNERS] = tuple(options.get(TUNERS, ())) + (tuner,)
    if first and not layout.dit_blocks:
        patched.set_model_output_block_patch(output_block_patch)
    if gate:
        install_gate(patched, function_wrapper)
    return patched
