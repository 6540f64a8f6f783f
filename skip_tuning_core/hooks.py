"""Skip Tuning for U-Nets run without a model patcher (A1111's ldm/sgm U-Net, diffusers' U-Nets), undone by
`remove()`. torch is imported only when a U-Net is tuned, so the rest of the core imports without it.

Each tuned layer takes `cat([h, skip], dim=1)` as its input, so the skip is the trailing channels of it. The
U-Net's call turns its timestep into one factor per skip with tensor operations (no value read into Python) and
each layer multiplies its skip channels by its factor. Residual Tuning's module hooks (residual.py, for diffusers'
and Forge's transformers) are the same handle with another call around each block.

Not torch hooks: torch.compile does not guard a module's hook dicts while they are empty
(`torch._dynamo.config.skip_nnmodule_hook_guards`), so hooks added to a U-Net that already ran compiled, or
added again after a removal, are silently never run. Instead the U-Net and each layer get a subclass of their
own class whose `_call_impl` does the work (as `torch.nn.utils.parametrize` swaps a module's class): dynamo
guards a module's type, so attaching and removing recompile once, and since the settings are tensors, a new
rho value or range reuses the compiled graph.
"""
import functools
import math

from .schedule import DEFAULT_RHO_BOTTOM, DEFAULT_RHO_TOP, SIGMA_RTOL, SkipPlan, make_ranges

TIMESTEPS = 1000
ENTRIES = "skip_tuning_entries"  # on a tuned module: the tuple of what each attached handle does there
INPUT_NAMES = ("input_tensor", "hidden_states", "x")  # a layer called with keywords (diffusers' UNetMotionModel)


def percent_to_timestep(percent: float) -> float:
    """The discrete-schedule timestep at a point of the run (0 = pure noise = t 999, 1 = finished = t 0)."""
    return (1.0 - percent) * (TIMESTEPS - 1)


def whole_run(percent: float) -> float:
    """Where nothing tells where a call is in the run, only the whole run (0-1) can be asked for."""
    return math.inf if percent <= 0.0 else -math.inf


def call_argument(name: str, position: int):
    """A reader of one argument of a module's call, `(args, kwargs) -> value`: by keyword, else at `position`;
    None when the call has neither."""
    def read(args, kwargs):
        return kwargs[name] if name in kwargs else (args[position] if len(args) > position else None)
    return read


def widened(value: float, direction: int) -> float:
    """A window bound moved outwards by the relative tolerance the ComfyUI path compares sigmas with."""
    return value + direction * SIGMA_RTOL * abs(value) if math.isfinite(value) else value


class SkipHandle:
    """What one `hook_skips` put on a U-Net; `remove()` (idempotent) takes all of it off."""

    def __init__(self, plan: SkipPlan, read_timestep, condition):
        self.read_timestep = read_timestep
        self.condition = condition
        self.place(plan)
        self.factors = None  # this call's factor per skip, 0-dim tensors on the U-Net's device
        self.modules = []
        self.cleanups = []  # what else `remove()` undoes (a scheduler method wrapped to follow its shift)

    def place(self, plan: SkipPlan) -> None:
        """Put the plan's ranges where its noise levels are (again, when the schedule changed)."""
        import torch
        self.plan = plan
        windows = plan.windows
        # Window order is priority order: the first listed range containing the timestep wins.
        self.bounds = torch.tensor([[widened(w.sigma_low, -1), widened(w.sigma_high, 1)] for w in windows],
                                   dtype=torch.float32)
        self.table = torch.tensor([list(w.rhos or (1.0,) * plan.num_blocks) for w in windows], dtype=torch.float32)

    def on_unet_call(self, args, kwargs):
        value = self.read_timestep(args, kwargs)
        if value is None:  # a call that names no timestep: nothing tells where it is in the run
            self.factors = None
            return
        if not hasattr(value, "max"):
            value = args[0].new_tensor(float(value), dtype=self.bounds.dtype)
        if self.bounds.device != value.device:
            self.bounds, self.table = self.bounds.to(value.device), self.table.to(value.device)
        factors = self.table.new_ones(self.table.shape[1])
        if self.condition is None or self.condition():
            largest = value.max().to(self.bounds.dtype)
            inside = (self.bounds[:, 0] <= largest) & (largest <= self.bounds[:, 1])
            for w in reversed(range(self.table.shape[0])):
                factors = self.table[w].where(inside[w], factors)
        self.factors = factors.unbind()  # one op for all skips; each layer then only multiplies

    def remove(self):
        while self.modules:
            module = self.modules.pop()
            untune(module, self)
        while self.cleanups:
            self.cleanups.pop()()
        self.factors = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def read_timestep_then_call(module, call, args, kwargs):
    for handle in getattr(module, ENTRIES):
        handle.on_unet_call(args, kwargs)
    return call(*args, **kwargs)


def scale_skip_then_call(module, call, args, kwargs):
    x = args[0] if args else next(kwargs[name] for name in INPUT_NAMES if name in kwargs)
    for handle, j, width in getattr(module, ENTRIES):
        if handle.factors is not None:
            # In place: the concatenated input is a fresh tensor the U-Net made for this layer alone.
            x[:, -width:].mul_(handle.factors[j].to(x.dtype))
    return call(*args, **kwargs)


TUNED_CLASSES = {}


def tuned_class(cls, around):
    """`cls` whose every call runs `around(module, call, args, kwargs)`, `call` being the class's own call;
    one per (cls, around)."""
    key = (cls, around)
    if key not in TUNED_CLASSES:
        # The function itself, not `cls._call_impl` looked up in the call: dynamo treats a class marked
        # allow_in_graph (diffusers' Flux blocks) as a torch function and breaks the graph on that lookup.
        call_impl = cls._call_impl

        def _call_impl(self, *args, **kwargs):
            return around(self, functools.partial(call_impl, self), args, kwargs)
        TUNED_CLASSES[key] = type(cls.__name__, (cls,), {
            "_call_impl": _call_impl, "__module__": cls.__module__, "__qualname__": cls.__qualname__,
            "skip_tuning_base": cls})
    return TUNED_CLASSES[key]


def tune(module, handle, entry, around):
    entries = getattr(module, ENTRIES, ())
    if not entries:
        module.__class__ = tuned_class(type(module), around)
    setattr(module, ENTRIES, entries + (entry,))
    handle.modules.append(module)


def untune(module, handle):
    entries = tuple(entry for entry in getattr(module, ENTRIES, ())
                    if (entry[0] if isinstance(entry, tuple) else entry) is not handle)
    if entries:
        setattr(module, ENTRIES, entries)
        return
    vars(module).pop(ENTRIES, None)
    # Another library may have swapped the class again since (parametrize does): then leave its class alone;
    # with no entries left our call does nothing.
    if type(module) in TUNED_CLASSES.values():
        module.__class__ = type(module).skip_tuning_base


def tuned_modules(module) -> int:
    """How many modules at or below `module` carry Skip Tuning."""
    return sum(1 for m in module.modules() if getattr(m, ENTRIES, ()))


def hook_skips(unet, layers, widths, read_timestep, rho_top=DEFAULT_RHO_TOP, rho_bottom=DEFAULT_RHO_BOTTOM,
               start_percent=0.0, end_percent=1.0, block_rhos: str = "", ranges: str = "", condition=None,
               percent_to_value=percent_to_timestep) -> SkipHandle:
    """Scale skip j (0 = deepest), the last widths[j] input channels of layers[j], while `unet` runs.

    The options mean what the ComfyUI node's inputs mean; a range is read on the value `read_timestep(args,
    kwargs)` finds in the U-Net's call (the largest in the batch), placed in the run by `percent_to_value`
    (decreasing from percent 0 to 1). `condition`, if given,
    is called once per U-Net call; when it returns False that call is left unscaled.
    """
    skip_ranges = make_ranges(len(widths), rho_top, rho_bottom, start_percent, end_percent, block_rhos, ranges)
    plan = SkipPlan(skip_ranges, len(widths), percent_to_value)
    handle = SkipHandle(plan, read_timestep, condition)
    if plan.is_identity:
        return handle
    tune(unet, handle, handle, read_timestep_then_call)
    for j, (layer, width) in enumerate(zip(layers, widths)):
        tune(layer, handle, (handle, j, width), scale_skip_then_call)
    return handle
