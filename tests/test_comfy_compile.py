"""torch.compile keeps a Skip Tuning U-Net whole: ComfyUI's own compile wrapper (what TorchCompileModel calls),
PyTorch attention, a counting backend; the noise level is read outside the compiled U-Net."""
import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters

from comfy_api.torch_helpers import set_torch_compile_wrapper

from test_comfy_patch import run_node, sample
from tiny_models import tiny_model

SETTINGS = {
    "whole run": dict(start_percent=0.0, end_percent=1.0),
    "range 0.3-0.7": dict(start_percent=0.3, end_percent=0.7),
}


class CountingBackend:
    """A dynamo backend that runs each graph eagerly, counting the graphs compiled and their runs."""

    def __init__(self):
        self.compiled = 0
        self.runs = 0

    def __call__(self, graph_module, example_inputs):
        self.compiled += 1

        def run(*args):
            self.runs += 1
            return graph_module.forward(*args)
        return run


def skip_transformer_options(guard_entries):
    """ComfyUI 0.38's TorchCompileModel guard filter (comfy_extras/nodes_torch_compile.py, skip_torch_compile_dict):
    dynamo keeps no guard on anything under transformer_options."""
    return [("transformer_options" not in entry.name) for entry in guard_entries]


def compiled(model, backend, options=None):
    """A clone compiled the way TorchCompileModel does it, plus a count of model calls made outside the U-Net."""
    model = model.clone()
    set_torch_compile_wrapper(model, backend=backend, options=options)
    calls = []

    def count_calls(executor, *args, **kwargs):
        calls.append(1)
        return executor(*args, **kwargs)
    model.add_wrapper_with_key("apply_model", "test-count", count_calls)
    return model, calls


def tuned(mappings, model, rho_bottom=0.7, **settings):
    (patched,) = run_node(mappings, "SkipTuning", model=model, rho_top=1.0, rho_bottom=rho_bottom, **settings)
    return patched


@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


def assert_no_breaks():
    assert dict(counters["graph_break"]) == {}, "graph breaks"
    assert counters["frames"]["total"] == counters["frames"]["ok"], f"frames skipped: {dict(counters['frames'])}"
    limit_hits = {k: v for k, v in counters["stats"].items() if "limit" in k or "cache_size" in k}
    assert limit_hits == {}, f"recompile-limit hits: {limit_hits}"


@pytest.mark.parametrize("name", [None, *SETTINGS])
def test_one_graph_per_unet_call_and_nothing_new_on_a_second_run(comfy_nodes_loaded, fresh_dynamo, name):
    """Unpatched, whole-run and range settings each run one compiled graph per U-Net call; a rerun compiles nothing."""
    model = tiny_model("sd1")
    if name is not None:
        model = tuned(comfy_nodes_loaded, model, **SETTINGS[name])
    backend = CountingBackend()
    model, calls = compiled(model, backend)
    sample(model, steps=4, cfg=3.0)
    assert len(calls) == 4 and backend.runs == len(calls)
    # Inside and outside a range the U-Net gets the same factor tensors (1 outside): one graph.
    assert backend.compiled == 1
    first = backend.compiled
    sample(model, steps=4, cfg=3.0, seed=1)
    assert backend.compiled == first and backend.runs == len(calls) == 8
    assert_no_breaks()


def test_a_range_is_exact_under_comfyui_038s_guard_filter(comfy_nodes_loaded, fresh_dynamo):
    """With no guard on transformer_options, a graph traced on a step outside the range is reused inside it: the
    steps inside must still be scaled, so the graph may never depend on whether a step is inside."""
    model = tuned(comfy_nodes_loaded, tiny_model("sd1"), start_percent=0.5, end_percent=1.0)  # the first step is outside
    eager = sample(model, steps=4, cfg=3.0)
    backend = CountingBackend()
    fast, calls = compiled(model, backend, options={"guard_filter_fn": skip_transformer_options})
    torch.testing.assert_close(sample(fast, steps=4, cfg=3.0), eager, rtol=1e-5, atol=1e-6)
    assert backend.compiled == 1 and backend.runs == len(calls) == 4
    assert not torch.equal(eager, sample(tiny_model("sd1"), steps=4, cfg=3.0))
    assert_no_breaks()


def test_a_new_rho_value_compiles_nothing_new(comfy_nodes_loaded, fresh_dynamo):
    """The factors reach the compiled U-Net as tensors: another rho reuses the graph (at most one compile allowed)."""
    base = tiny_model("sd1")
    backend = CountingBackend()
    first, _ = compiled(tuned(comfy_nodes_loaded, base, rho_bottom=0.7, **SETTINGS["whole run"]), backend)
    sample(first, steps=2)
    assert backend.compiled == 1
    second, calls = compiled(tuned(comfy_nodes_loaded, base, rho_bottom=0.55, **SETTINGS["whole run"]), backend)
    one = sample(second, steps=2)
    assert backend.compiled <= 2 and backend.runs == 2 + len(calls)
    assert not torch.equal(one, sample(first, steps=2)), "the second rho must take effect"
    assert_no_breaks()


def test_compiled_output_equals_eager_with_inductor(comfy_nodes_loaded, fresh_dynamo):
    """Inductor (ComfyUI's default backend) gives the eager result within its float32 tolerance, for a range."""
    model = tuned(comfy_nodes_loaded, tiny_model("sd1"), **SETTINGS["range 0.3-0.7"])
    eager = sample(model, steps=4, cfg=3.0)
    fast = model.clone()
    set_torch_compile_wrapper(fast, backend="inductor")
    torch.testing.assert_close(sample(fast, steps=4, cfg=3.0), eager, rtol=1e-4, atol=1e-4 * eager.abs().max().item())
    assert not torch.equal(eager, sample(tiny_model("sd1"), steps=4, cfg=3.0))
