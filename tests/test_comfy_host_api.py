"""The ComfyUI API the pack relies on is exactly what README's host-API table lists: every attribute and method the
pack reads on the model patcher, the model, its schedule, the wrapper executor and transformer_options is recorded
while a tuned model is made and sampled (ranges, chained nodes, CFG), and each must be a row of that table, so the
table stays the truth when the pack starts relying on something new."""
import re
from pathlib import Path

import torch

from skip_tuning_core import patcher as core_patcher
from skip_tuning_core import skip_tuned
from test_comfy_patch import sample
from tiny_models import tiny_model

README = Path(__file__).resolve().parents[1] / "README.md"
FOLLOWED = {"model", "diffusion_model", "model_sampling", "class_obj"}  # objects whose own attributes count too


class Recording:
    """Forwards everything to `obj`, writing down `<type>.<name>` for each attribute read."""

    def __init__(self, obj, seen: set):
        object.__setattr__(self, "_obj", obj)
        object.__setattr__(self, "_seen", seen)

    def __getattr__(self, name):
        obj, seen = object.__getattribute__(self, "_obj"), object.__getattribute__(self, "_seen")
        seen.add(f"{type(obj).__name__}.{name}")
        value = getattr(obj, name)
        if name == "clone":
            return lambda *args, **kwargs: Recording(value(*args, **kwargs), seen)
        return Recording(value, seen) if name in FOLLOWED else value

    def __call__(self, *args, **kwargs):
        obj = object.__getattribute__(self, "_obj")
        object.__getattribute__(self, "_seen").add(f"{type(obj).__name__}.__call__")
        return obj(*args, **kwargs)


class RecordingOptions(dict):
    """transformer_options, writing down each key read."""

    def __init__(self, options, seen):
        super().__init__(options)
        self.seen = seen

    def get(self, key, default=None):
        self.seen.add(f'transformer_options["{key}"]')
        return super().get(key, default)

    def __getitem__(self, key):
        self.seen.add(f'transformer_options["{key}"]')
        return super().__getitem__(key)


def recorded_sampling(patcher, seen):
    """Route the pack's wrapper and patch on `patcher` through recording proxies, then sample it."""
    wrappers = patcher.wrappers[core_patcher.APPLY_MODEL][core_patcher.WRAPPER_KEY]

    def apply_model_wrapper(executor, x, t, c_concat, c_crossattn, control, transformer_options, **kwargs):
        return core_patcher.apply_model_wrapper(Recording(executor, seen), x, t, c_concat, c_crossattn, control,
                                                RecordingOptions(transformer_options, seen), **kwargs)

    wrappers[:] = [apply_model_wrapper]
    patches = patcher.model_options["transformer_options"]["patches"]["output_block_patch"]
    patches[:] = [lambda h, hsp, options: core_patcher.output_block_patch(h, hsp, RecordingOptions(options, seen))]
    return sample(patcher, steps=3, cfg=3.0)


def table_rows() -> set:
    """The API names in README's host-API table (its ComfyUI rows: first cell, in backticks)."""
    text = README.read_text()
    section = text[text.index("<!-- BEGIN host-api -->"):text.index("<!-- END host-api -->")]
    return {name for row in section.splitlines() if row.startswith("| ComfyUI")
            for name in re.findall(r"`([^`]+)`", row.split("|")[2])}


def test_every_comfyui_api_the_pack_uses_while_sampling_is_a_row_of_the_readme_table(comfy_nodes_loaded):
    seen = set()
    base = tiny_model("sd1")
    tuned = skip_tuned(Recording(base, seen), rho_bottom=0.7, start_percent=0.2, end_percent=0.8)
    tuned = skip_tuned(tuned, rho_top=0.9, rho_bottom=0.9)  # chained: the second node finds the first
    real = object.__getattribute__(tuned, "_obj")
    out = recorded_sampling(real, seen)
    assert torch.isfinite(out).all()
    # What the recording must catch for the test to mean anything: node time and sampling time alike.
    assert {"ModelPatcher.clone", "ModelPatcher.model_options", "BaseModel.model_sampling",
            'transformer_options["block"]', "WrapperExecutor.class_obj"} <= seen, seen
    missing = seen - table_rows()
    assert not missing, f"the pack uses ComfyUI API that README's host-API table does not list: {sorted(missing)}"
